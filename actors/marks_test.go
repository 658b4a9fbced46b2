package actors

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
)

// gatedStore holds every MarkDispatched call until open is closed, and
// counts the calls.
type gatedStore struct {
	store.Store
	open    chan struct{}
	calls   atomic.Int64
	waiting atomic.Int64
}

func (s *gatedStore) MarkDispatched(ctx context.Context, ids ...string) error {
	s.calls.Add(1)
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case <-s.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Store.MarkDispatched(ctx, ids...)
}

// markRig is a real embedded store behind a gate, with n commits of one
// outbox message each.
func markRig(t *testing.T, n int) (*gatedStore, *Deps, [][]string) {
	t.Helper()
	st, err := embedded.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	gated := &gatedStore{Store: st, open: make(chan struct{})}
	deps := &Deps{Store: gated, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), SettleTimeout: 10 * time.Second}
	ids := make([][]string, n)
	for i := range n {
		m := message.Envelope{ID: message.NewID(), Kind: message.KindReply, Type: "test.Done.v1", Source: "test", Destination: "sagaflow", Key: "k", Payload: []byte(`{}`)}
		c := store.Commit{Stream: fmt.Sprintf("agg/test/%d", i), Version: 1, Outbox: []message.Envelope{m}, At: time.Now()}
		if err := st.Append(t.Context(), c); err != nil {
			t.Fatal(err)
		}
		ids[i] = []string{m.ID}
	}
	return gated, deps, ids
}

func pendingCount(t *testing.T, st store.Store) int {
	t.Helper()
	pending, err := st.PendingOutbox(context.Background(), time.Now().Add(time.Hour), 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(pending)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestMarkQueueMergesCallersMarksAndCloseWritesThemAll(t *testing.T) {
	const n = 300
	st, deps, ids := markRig(t, n)
	q := newMarkQueue(deps, n)
	var wg sync.WaitGroup
	for _, batch := range ids {
		wg.Add(1)
		go func() { defer wg.Done(); q.Add(context.Background(), batch) }()
	}
	wg.Wait() // every Add returned at once: none waited for the store
	waitFor(t, "both workers at the store", func() bool { return st.waiting.Load() == markWorkers })
	if got := pendingCount(t, st); got != n {
		t.Fatalf("%d entries pending while the store is held, want %d", got, n)
	}
	close(st.open)
	q.Close(context.Background())
	if got := pendingCount(t, st); got != 0 {
		t.Errorf("%d outbox entries still pending after Close", got)
	}
	// Each worker's first call took one Add; the other 298 Adds (one ID
	// each) fit in one call of up to maxMarkBatch IDs per worker.
	if calls := st.calls.Load(); calls > 2*markWorkers {
		t.Errorf("%d MarkDispatched calls for %d Adds, want them merged into at most %d", calls, n, 2*markWorkers)
	}
}

func TestMarkQueueMarksSynchronouslyWhenFull(t *testing.T) {
	st, deps, ids := markRig(t, markWorkers+2)
	q := newMarkQueue(deps, 1)
	for i, batch := range ids[:markWorkers] {
		q.Add(context.Background(), batch) // taken by a worker, held at the store
		waitFor(t, "a worker at the store", func() bool { return st.waiting.Load() == int64(i+1) })
	}
	q.Add(context.Background(), ids[markWorkers]) // fills the queue
	returned := make(chan struct{})
	go func() { q.Add(context.Background(), ids[markWorkers+1]); close(returned) }()
	// The queue is full: the caller goes to the store itself.
	waitFor(t, "the caller at the store", func() bool { return st.waiting.Load() == markWorkers+1 })
	select {
	case <-returned:
		t.Fatal("Add on a full queue returned before its messages were marked")
	default:
	}
	close(st.open)
	<-returned
	q.Close(context.Background())
	if got := pendingCount(t, st); got != 0 {
		t.Errorf("%d outbox entries still pending, want none lost", got)
	}
}

func TestMarkQueueCloseIsBoundedAndLeavesTheRestToTheRelay(t *testing.T) {
	st, deps, ids := markRig(t, 3)
	q := newMarkQueue(deps, 8)
	for _, batch := range ids {
		q.Add(context.Background(), batch)
	}
	// A worker may take all three in one call.
	waitFor(t, "a worker at the store", func() bool { return st.waiting.Load() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	q.Close(ctx) // returns although the store holds the marks
	if got := pendingCount(t, st); got != len(ids) {
		t.Errorf("%d entries pending after a Close that timed out, want all %d (left to the relay)", got, len(ids))
	}
	close(st.open)
	q.Close(context.Background()) // a second Close waits for the workers
	// An Add after Close marks synchronously.
	extra, deps2, extraIDs := markRig(t, 1)
	close(extra.open)
	q2 := newMarkQueue(deps2, 1)
	q2.Close(context.Background())
	q2.Add(context.Background(), extraIDs[0])
	if got := pendingCount(t, extra); got != 0 {
		t.Errorf("Add after Close left %d entries pending", got)
	}
}
