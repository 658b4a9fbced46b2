package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/store"
)

// Features says what the store under test supports.
type Features struct {
	// Reopen closes old and returns a new Store over the same data, as a
	// restart would. It registers the new store's Close with t.Cleanup. Nil
	// when the store cannot be reopened; the durability tests are then
	// skipped.
	Reopen func(t *testing.T, old store.Store) store.Store
	// DetectsGaps is true when Append refuses, with store.ErrInvalidCommit,
	// a commit whose predecessor version is missing (a first commit at v2,
	// or v5 on a stream at v3).
	DetectsGaps bool
	// TimePrecision is how finely the store keeps times; times must come
	// back equal after truncation to it. Zero means time.Millisecond, the
	// coarsest the suite accepts (MongoDB's).
	TimePrecision time.Duration
}

// Run runs the conformance suite against the store newStore makes. newStore
// must return a new, empty store on every call and register its Close with
// t.Cleanup; Close on a store the suite already closed may return nil or
// store.ErrClosed.
func Run(t *testing.T, newStore func(t *testing.T) store.Store, f Features) {
	t.Helper()
	prec := f.TimePrecision
	if prec <= 0 || prec > time.Millisecond {
		prec = time.Millisecond
	}
	s := &suite{newStore: newStore, f: f, cmp: comparer{prec: prec}}
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"AppendLoad", s.testAppendLoad},
		{"InvalidCommits", s.testInvalidCommits},
		{"AtomicRefusal", s.testAtomicRefusal},
		{"OptimisticConcurrency", s.testOptimisticConcurrency},
		{"Handled", s.testHandled},
		{"Outbox", s.testOutbox},
		{"Timers", s.testTimers},
		{"InfoAndList", s.testInfoAndList},
		{"Snapshots", s.testSnapshots},
		{"Keys", s.testKeys},
		{"ConcurrentStreams", s.testConcurrentStreams},
		{"Context", s.testContext},
		{"Closed", s.testClosed},
		{"Durability", s.testDurability},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

// suite carries Run's arguments to the tests.
type suite struct {
	newStore func(t *testing.T) store.Store
	f        Features
	cmp      comparer
}

// testTimeout bounds every test's context, so that a hanging store fails
// the test instead of the whole run.
const testTimeout = 60 * time.Second

// testContext returns a context that ends with the test or after
// testTimeout.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// reopen restarts st through Features.Reopen, skipping the test when the
// store cannot be reopened.
func (s *suite) reopen(t *testing.T, st store.Store) store.Store {
	t.Helper()
	if s.f.Reopen == nil {
		t.Skip("store does not support Reopen (Features.Reopen is nil)")
	}
	st2 := s.f.Reopen(t, st)
	if st2 == nil {
		t.Fatal("Features.Reopen returned a nil store")
	}
	return st2
}

func mustAppend(t *testing.T, ctx context.Context, st store.Store, c store.Commit) {
	t.Helper()
	if err := st.Append(ctx, c); err != nil {
		t.Fatalf("Append(%s v%d): %v", c.Stream, c.Version, err)
	}
}

// appendFails appends c and requires an error that wraps want.
func appendFails(t *testing.T, ctx context.Context, st store.Store, c store.Commit, want error) {
	t.Helper()
	err := st.Append(ctx, c)
	if !errors.Is(err, want) {
		t.Fatalf("Append(%s v%d) = %v, want an error wrapping %q", c.Stream, c.Version, err, want)
	}
}

func mustLoad(t *testing.T, ctx context.Context, st store.Store, stream string, from uint64) []store.Commit {
	t.Helper()
	got, err := st.Load(ctx, stream, from)
	if err != nil {
		t.Fatalf("Load(%s, %d): %v", stream, from, err)
	}
	return got
}

func mustInfo(t *testing.T, ctx context.Context, st store.Store, stream string) store.StreamInfo {
	t.Helper()
	info, err := st.Info(ctx, stream)
	if err != nil {
		t.Fatalf("Info(%s): %v", stream, err)
	}
	return info
}

func mustPending(t *testing.T, ctx context.Context, st store.Store, olderThan time.Time, limit int) []store.OutboxEntry {
	t.Helper()
	got, err := st.PendingOutbox(ctx, olderThan, limit)
	if err != nil {
		t.Fatalf("PendingOutbox(%s, %d): %v", olderThan.Format(time.RFC3339Nano), limit, err)
	}
	return got
}

func mustDue(t *testing.T, ctx context.Context, st store.Store, now time.Time, limit int) []store.Timer {
	t.Helper()
	got, err := st.DueTimers(ctx, now, limit)
	if err != nil {
		t.Fatalf("DueTimers(%s, %d): %v", now.Format(time.RFC3339Nano), limit, err)
	}
	return got
}

// requireHandled checks Handled(stream, msgID) against (wantVersion, wantOK).
func requireHandled(t *testing.T, ctx context.Context, st store.Store, stream, msgID string, wantVersion uint64, wantOK bool) {
	t.Helper()
	v, ok, err := st.Handled(ctx, stream, msgID)
	if err != nil {
		t.Fatalf("Handled(%s, %s): %v", stream, msgID, err)
	}
	if ok != wantOK || (wantOK && v != wantVersion) {
		t.Fatalf("Handled(%s, %s) = (v%d, %t), want (v%d, %t)", stream, msgID, v, ok, wantVersion, wantOK)
	}
}

// requireNotFound checks that stream has no commits at all.
func requireNotFound(t *testing.T, ctx context.Context, st store.Store, stream string) {
	t.Helper()
	if info, err := st.Info(ctx, stream); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Info(%s) = %+v, %v; want ErrNotFound", stream, info, err)
	}
	if got := mustLoad(t, ctx, st, stream, 0); len(got) != 0 {
		t.Fatalf("Load(%s) returned %d commits, want none", stream, len(got))
	}
}

// ids returns the ID of each element.
func ids[T any](items []T, id func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = id(it)
	}
	return out
}

func outboxID(e store.OutboxEntry) string { return e.ID }
func timerID(tm store.Timer) string       { return tm.ID }
func streamName(i store.StreamInfo) string {
	return i.Stream
}
