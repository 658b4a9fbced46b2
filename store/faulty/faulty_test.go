package faulty_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
	"github.com/sagaflow/sagaflow/store/faulty"
	"github.com/sagaflow/sagaflow/store/storetest"
)

func open(t *testing.T, dir string) store.Store {
	t.Helper()
	st, err := embedded.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// With no fault on, the wrapper is the store it wraps: it passes the
// conformance suite.
func TestConformanceWithoutFaults(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return faulty.Wrap(open(t, t.TempDir())) }, storetest.Features{DetectsGaps: true})
}

func commit(stream string, v uint64, handled string) store.Commit {
	return store.Commit{Stream: stream, Version: v, Handled: []string{handled}, At: time.Now()}
}

func TestInjectedFaultsWriteNothing(t *testing.T) {
	ctx := context.Background()
	inner := open(t, t.TempDir())
	s := faulty.Wrap(inner)
	s.FailAfter(2)
	for v := uint64(1); v <= 2; v++ {
		if err := s.Append(ctx, commit("s", v, "m"+string(rune('0'+v)))); err != nil {
			t.Fatalf("append v%d before the fault: %v", v, err)
		}
	}
	err := s.Append(ctx, commit("s", 3, "m3"))
	if !errors.Is(err, faulty.ErrInjected) || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("third append = %v, want ErrInjected wrapping ErrUnavailable", err)
	}
	for name, werr := range map[string]error{
		"mark dispatched": s.MarkDispatched(ctx, "x"),
		"delete timers":   s.DeleteTimers(ctx, "x"),
		"save snapshot":   s.SaveSnapshot(ctx, store.Snapshot{Stream: "s", Version: 1}),
	} {
		if !errors.Is(werr, faulty.ErrInjected) {
			t.Errorf("%s while down = %v, want ErrInjected", name, werr)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("ping while down without PingDown = %v", err)
	}
	s.PingDown(true)
	if err := s.Ping(ctx); !errors.Is(err, faulty.ErrInjected) {
		t.Errorf("ping while down with PingDown = %v", err)
	}
	if info, err := inner.Info(ctx, "s"); err != nil || info.Version != 2 {
		t.Fatalf("inner store after the fault: %+v %v, want version 2", info, err)
	}
	if s.Committed("m3") || !s.Committed("m2") {
		t.Errorf("committed m2=%v m3=%v, want true false", s.Committed("m2"), s.Committed("m3"))
	}
	s.SetDown(false)
	if err := s.Append(ctx, commit("s", 3, "m3")); err != nil {
		t.Fatalf("append after the fault cleared: %v", err)
	}
	if err := s.Append(ctx, commit("s", 3, "m4")); !errors.Is(err, store.ErrConcurrency) {
		t.Fatalf("conflicting append = %v", err)
	}
	if err := s.Append(ctx, commit("s", 4, "m3")); !errors.Is(err, store.ErrAlreadyHandled) {
		t.Fatalf("duplicate append = %v", err)
	}
	want := faulty.Stats{Appends: 3, Injected: 4, Conflicts: 1, AlreadyHandled: 1}
	if got := s.Stats(); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}

// lostAnswers is a store whose appends write their commit and then fail
// (answer lost) or fail without writing, as a server killed mid-write.
type lostAnswers struct {
	store.Store
	write bool
}

func (l *lostAnswers) Append(ctx context.Context, c store.Commit) error {
	if l.write {
		if err := l.Store.Append(ctx, c); err != nil {
			return err
		}
	}
	return fmt.Errorf("connection closed: %w", store.ErrUnavailable)
}

// Durable finds a commit whose append failed after writing it, and no
// commit whose append failed before.
func TestDurableFindsCommitsWhoseAnswerWasLost(t *testing.T) {
	ctx := context.Background()
	inner := &lostAnswers{Store: open(t, t.TempDir()), write: true}
	s := faulty.Wrap(inner)
	if err := s.Append(ctx, commit("s", 1, "written")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("append whose answer is lost = %v", err)
	}
	inner.write = false
	if err := s.Append(ctx, commit("s", 2, "lost")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("append that writes nothing = %v", err)
	}
	for id, want := range map[string]bool{"written": true, "lost": false, "never": false} {
		if s.Committed(id) {
			t.Errorf("Committed(%s) = true, want false (no append of it succeeded)", id)
		}
		got, err := s.Durable(ctx, id)
		if err != nil || got != want {
			t.Errorf("Durable(%s) = %v, %v, want %v", id, got, err, want)
		}
	}
}
