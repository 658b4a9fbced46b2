package engine_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/actors"
	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/engine"
)

// Append is a command to the counter aggregate: sender's seq-th command.
type Append struct {
	Sender int `json:"sender"`
	Seq    int `json:"seq"`
}

// Appended records an Append.
type Appended struct {
	Sender int `json:"sender"`
	Seq    int `json:"seq"`
}

// Tally is the counter aggregate's state.
type Tally struct{ N int }

func counterAggregate() *aggregate.Definition[Tally] {
	d := aggregate.New("counters", "test.Counter", func(string) Tally { return Tally{} })
	aggregate.Handle(d, func(_ Tally, c *Append) ([]any, error) {
		return []any{Appended(*c)}, nil
	})
	aggregate.Apply(d, func(s Tally, _ *Appended) Tally { s.N++; return s })
	return d
}

func TestOrderingPerAggregateUnderConcurrentSenders(t *testing.T) {
	forEachStore(t, testOrdering)
}

func testOrdering(t *testing.T, ts testStore) {
	const senders, perSender, aggregates = 8, 125, 10
	opts := ts.options(t)
	opts.AdminAddr, opts.Logger, opts.Partitions = engine.AdminOff, quietLogger(), 4
	e := engine.New(opts).
		Register(engine.Message[Append]("test.Append.v1"), engine.Message[Appended]("test.Appended.v1")).
		Register(counterAggregate())
	runEngine(t, e)

	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				key := fmt.Sprintf("counter-%d", (s+i)%aggregates)
				if _, err := e.Send(ctx, "counters", key, &Append{Sender: s, Seq: i}, nil); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("send: %v", err)
	}

	total := func() int {
		n := 0
		for a := range aggregates {
			st, _, err := e.AggregateState(ctx, "counters", fmt.Sprintf("counter-%d", a))
			if err != nil {
				t.Fatalf("state: %v", err)
			}
			n += st.(Tally).N
		}
		return n
	}
	deadline := time.Now().Add(60 * time.Second)
	for total() < senders*perSender {
		if time.Now().After(deadline) {
			t.Fatalf("applied %d of %d commands within 60s", total(), senders*perSender)
		}
		time.Sleep(10 * time.Millisecond)
	}

	applied := 0
	for a := range aggregates {
		key := fmt.Sprintf("counter-%d", a)
		commits, err := e.Store().Load(ctx, actors.AggregateStream("test.Counter", key), 1)
		if err != nil {
			t.Fatal(err)
		}
		lastSeq := map[int]int{}
		var want uint64 = 1
		for ci, c := range commits {
			if c.Version != uint64(ci+1) {
				t.Fatalf("%s: commit %d has version %d", key, ci, c.Version)
			}
			for _, ev := range c.Events {
				if ev.Sequence != want {
					t.Fatalf("%s: event sequence %d, want %d (contiguous)", key, ev.Sequence, want)
				}
				want++
				v, err := e.Registry().DecodeEnvelope(ev)
				if err != nil {
					t.Fatal(err)
				}
				ap := v.(*Appended)
				if last, seen := lastSeq[ap.Sender]; seen && ap.Seq <= last {
					t.Fatalf("%s: sender %d's command %d applied after its command %d", key, ap.Sender, ap.Seq, last)
				}
				lastSeq[ap.Sender] = ap.Seq
				applied++
			}
		}
	}
	if applied != senders*perSender {
		t.Fatalf("applied %d events, want %d", applied, senders*perSender)
	}
}
