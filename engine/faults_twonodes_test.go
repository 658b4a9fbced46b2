package engine_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/actors"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	storefaulty "github.com/sagaflow/sagaflow/store/faulty"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/workflows"
)

// twoNodes is the test topology of issue 11 item 10: a broker without
// single-active-consumer, so that two engines consume the same partitions
// at once. Each node has its own in-process transport and consumes it;
// a publish from either node goes to one node or the other in turn, and
// every third one to both (a redelivery racing the original on the other
// node). The messages of one key are so handled on both nodes, at the
// same time, and out of order.
type twoNodes struct {
	nodes [2]*inmem.Transport
	n     atomic.Uint64
}

// node returns the transport node i's engine runs on.
func (tn *twoNodes) node(i int) transport.Transport {
	return &spreadTransport{Transport: tn.nodes[i], tn: tn}
}

type spreadTransport struct {
	transport.Transport // this node's queues: Consume and the dead letters
	tn                  *twoNodes
}

func (s *spreadTransport) Declare(ctx context.Context, q transport.Queue) error {
	return errors.Join(s.tn.nodes[0].Declare(ctx, q), s.tn.nodes[1].Declare(ctx, q))
}

func (s *spreadTransport) Publish(ctx context.Context, e message.Envelope) error {
	n := s.tn.n.Add(1)
	if n%3 == 0 {
		return errors.Join(s.tn.nodes[0].Publish(ctx, e), s.tn.nodes[1].Publish(ctx, e))
	}
	return s.tn.nodes[n%2].Publish(ctx, e)
}

// TestTwoNodesOnOnePartitionKeepStreamsConsistent proves issue 11 item
// 10: two engines on one store both handle the messages of the same keys
// at the same time (see twoNodes). The append-with-unique-version rule
// (I2) makes the loser of each race reload and decide again: the test
// shows that conflicts happened, that every saga finished as it should
// with each step succeeding once, that every participant applied each
// effect exactly once, and that every aggregate's events are numbered
// 1, 2, ... without a gap or a repeat.
func TestTwoNodesOnOnePartitionKeepStreamsConsistent(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts testStore) {
		inner := ts.open(t) // one store value shared by both engines
		st := storefaulty.Wrap(inner)
		tn := &twoNodes{}
		for i := range tn.nodes {
			tn.nodes[i] = inmem.New(inmem.WithPartitions(2), inmem.WithLogger(quietLogger()))
			t.Cleanup(func() { _ = tn.nodes[i].Close() })
		}
		var engines [2]*engine.Engine
		for i := range engines {
			engines[i] = newFaultEngine(t, engine.Options{Store: st, Transport: tn.node(i), Partitions: 2, RelayInterval: 200 * time.Millisecond})
		}
		t.Cleanup(func() {
			if !t.Failed() {
				return
			}
			for i, n := range tn.nodes {
				dls, _ := n.DeadLetters(context.Background(), 5)
				for _, dl := range dls {
					t.Logf("node %d dead letter %s %s: %s", i, dl.Message.Type, dl.Message.ID, dl.Reason)
				}
			}
		})
		b := orderBatch{prefix: "two", n: batchSize(ts.kind, 40)}
		for i := range b.n {
			if err := b.start(engines[i%2], i); err != nil {
				t.Fatalf("start %s: %v", b.id(i), err)
			}
		}
		b.waitAll(t, engines[0], inner, soakWait(60*time.Second))
		for i := range b.n {
			s, err := engines[1].GetSaga(context.Background(), b.id(i))
			if err != nil {
				t.Fatal(err)
			}
			for _, step := range []string{"reserve-stock", "charge-payment"} {
				succeeded := 0
				for _, ev := range stepEvents(s, step) {
					if ev == workflows.EventStepSucceeded {
						succeeded++
					}
				}
				if succeeded != 1 {
					t.Errorf("saga %s: step %s succeeded %d times, want once: %v", s.ID, step, succeeded, stepEvents(s, step))
				}
			}
			for _, agg := range []string{"inventory.Reservation", "payments.Payment", "shipping.Shipment"} {
				checkContiguous(t, inner, actors.AggregateStream(agg, b.id(i)))
			}
		}
		stats := st.Stats()
		t.Logf("store: %+v", stats)
		if stats.Conflicts == 0 {
			t.Errorf("no ErrConcurrency conflicts: the two nodes never raced (%+v)", stats)
		}
		for i, n := range tn.nodes {
			if dls, _ := n.DeadLetters(context.Background(), 10); len(dls) != 0 {
				t.Errorf("node %d dead letters: %+v", i, dls)
			}
		}
	})
}

// checkContiguous asserts a stream's commits are versions 1..n and its
// events are numbered 1..m, each once.
func checkContiguous(t *testing.T, st store.Store, stream string) {
	t.Helper()
	commits, err := st.Load(context.Background(), stream, 1)
	if err != nil {
		t.Fatalf("load %s: %v", stream, err)
	}
	seq := uint64(0)
	for i, c := range commits {
		if c.Version != uint64(i+1) {
			t.Errorf("%s: commit %d has version %d", stream, i+1, c.Version)
		}
		for _, ev := range c.Events {
			if seq++; ev.Sequence != seq {
				t.Errorf("%s: event sequence %d, want %d", stream, ev.Sequence, seq)
			}
		}
	}
}
