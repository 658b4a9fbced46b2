package engine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/store/embedded"
	storefaulty "github.com/sagaflow/sagaflow/store/faulty"
	"github.com/sagaflow/sagaflow/transport/inmem"
)

// TestStoreWriteErrorMidRun proves issue 11 item 11: the store starts
// failing every write in the middle of a run of 40 sagas (after 60
// successful appends) and stays down for a while. Nothing is acknowledged
// that was not committed (every ack the actors give is for a message whose
// commit the store accepted, or that an earlier commit recorded as
// handled), starts answer with an error instead of half-starting a saga,
// nothing is dead-lettered, and when the fault clears every saga finishes
// with every effect exactly once (which a half-written commit or a lost
// message would break).
func TestStoreWriteErrorMidRun(t *testing.T) {
	ctx := context.Background()
	inner, err := embedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inner.Close() })
	st := storefaulty.Wrap(inner)
	tr := inmem.New(inmem.WithPartitions(4), inmem.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = tr.Close() })

	var (
		mu        sync.Mutex
		badAcks   []deliveryInfo
		acksWhile int
	)
	audit := &settleAudit{Transport: tr, onAck: func(d deliveryInfo) {
		mu.Lock()
		defer mu.Unlock()
		if st.Down() {
			acksWhile++
		}
		if !st.Committed(d.ID) {
			badAcks = append(badAcks, d)
		}
	}}
	e := newFaultEngine(t, engine.Options{Store: st, Transport: audit, Partitions: 4,
		RetryDelay: 50 * time.Millisecond, MaxRetryDelay: 200 * time.Millisecond})

	st.FailAfter(60)
	b := orderBatch{prefix: "wfail", n: soak(40)}
	failed := b.startAll(t, e)
	deadline := time.Now().Add(20 * time.Second)
	for !st.Down() {
		if time.Now().After(deadline) {
			t.Fatalf("the fault never switched on (%+v)", st.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // the store stays down under load
	for _, i := range b.startAll(t, e) {
		if !contains(failed, i) {
			failed = append(failed, i)
		}
	}
	if len(failed) == 0 {
		t.Errorf("every start succeeded while the store was down")
	}
	if dls, _ := tr.DeadLetters(ctx, 10); len(dls) != 0 {
		t.Fatalf("dead letters while the store was down: %+v", dls)
	}
	st.SetDown(false)
	for _, i := range failed {
		if err := b.start(e, i); err != nil {
			t.Fatalf("start %s after the fault cleared: %v", b.id(i), err)
		}
	}
	b.waitAll(t, e, inner, soakWait(60*time.Second))
	mu.Lock()
	defer mu.Unlock()
	t.Logf("store: %+v; %d starts failed during the fault; %d acks while down", st.Stats(), len(failed), acksWhile)
	if len(badAcks) > 0 {
		t.Errorf("%d deliveries acked without a commit, e.g. %+v", len(badAcks), badAcks[0])
	}
	if dls, _ := tr.DeadLetters(ctx, 10); len(dls) != 0 {
		t.Errorf("dead letters: %+v", dls)
	}
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
