package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/store"
)

// call is one method of store.Store with fixed arguments.
type call struct {
	name string
	do   func(ctx context.Context, st store.Store) error
}

// callsStream is the stream the calls touch; seedCalls writes its v1.
const callsStream = "calls"

func seedCalls(t *testing.T, ctx context.Context, st store.Store) {
	t.Helper()
	mustAppend(t, ctx, st, fullCommit(callsStream, 1, "c"))
}

// everyCall lists a call of every Store method but Close.
func everyCall() []call {
	return []call{
		{"Append", func(ctx context.Context, st store.Store) error {
			return st.Append(ctx, fullCommit(callsStream, 2, "c"))
		}},
		{"Load", func(ctx context.Context, st store.Store) error {
			_, err := st.Load(ctx, callsStream, 0)
			return err
		}},
		{"Handled", func(ctx context.Context, st store.Store) error {
			_, _, err := st.Handled(ctx, callsStream, inID(callsStream, 1, "c"))
			return err
		}},
		{"Info", func(ctx context.Context, st store.Store) error {
			_, err := st.Info(ctx, callsStream)
			return err
		}},
		{"List", func(ctx context.Context, st store.Store) error {
			_, err := st.List(ctx, store.ListFilter{})
			return err
		}},
		{"PendingOutbox", func(ctx context.Context, st store.Store) error {
			_, err := st.PendingOutbox(ctx, farFuture, 10)
			return err
		}},
		{"MarkDispatched", func(ctx context.Context, st store.Store) error {
			return st.MarkDispatched(ctx, outID(callsStream, 1, "c", 0))
		}},
		{"DueTimers", func(ctx context.Context, st store.Store) error {
			_, err := st.DueTimers(ctx, farFuture, 10)
			return err
		}},
		{"NextTimer", func(ctx context.Context, st store.Store) error {
			_, _, err := st.NextTimer(ctx)
			return err
		}},
		{"DeleteTimers", func(ctx context.Context, st store.Store) error {
			return st.DeleteTimers(ctx, timerIDOf(callsStream, 1, "c"))
		}},
		{"SaveSnapshot", func(ctx context.Context, st store.Store) error {
			return st.SaveSnapshot(ctx, snapshotOf(callsStream, 1))
		}},
		{"LoadSnapshot", func(ctx context.Context, st store.Store) error {
			_, _, err := st.LoadSnapshot(ctx, callsStream)
			return err
		}},
		{"Ping", func(ctx context.Context, st store.Store) error {
			return st.Ping(ctx)
		}},
	}
}

// promptly is how long a call with a dead context or on a closed store
// may take.
const promptly = 5 * time.Second

// callPromptly runs c and fails t if it does not return within promptly.
func callPromptly(t *testing.T, ctx context.Context, st store.Store, c call) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.do(ctx, st) }()
	select {
	case err := <-done:
		return err
	case <-time.After(promptly):
		t.Fatalf("%s did not return within %s", c.name, promptly)
		return nil
	}
}

// testContext: a call with a cancelled or expired context returns that
// context's error promptly, and an Append refused so writes nothing or all.
func (s *suite) testContext(t *testing.T) {
	deadContexts := []struct {
		name string
		ctx  func() context.Context
		want error
	}{
		{"Cancelled", func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, context.Canceled},
		{"DeadlinePassed", func() context.Context {
			ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			t.Cleanup(cancel)
			return ctx
		}, context.DeadlineExceeded},
	}
	for _, dc := range deadContexts {
		t.Run(dc.name, func(t *testing.T) {
			ctx := testContext(t)
			st := s.newStore(t)
			seedCalls(t, ctx, st)
			for _, c := range everyCall() {
				if err := callPromptly(t, dc.ctx(), st, c); !errors.Is(err, dc.want) {
					t.Errorf("%s with a dead context = %v, want an error wrapping %v", c.name, err, dc.want)
				}
			}
			// The store still works, and the refused Append wrote all or nothing.
			got := mustLoad(t, ctx, st, callsStream, 2)
			switch len(got) {
			case 0:
			case 1:
				s.cmp.requireCommits(t, "Load(calls, 2)", got, []store.Commit{fullCommit(callsStream, 2, "c")})
			default:
				t.Fatalf("Load(calls, 2) returned %d commits", len(got))
			}
			if err := st.Ping(ctx); err != nil {
				t.Fatalf("Ping after calls with dead contexts: %v", err)
			}
		})
	}
}

// testClosed: after Close, every call fails promptly with ErrClosed, and a
// second Close does no harm.
func (s *suite) testClosed(t *testing.T) {
	ctx := testContext(t)
	st := s.newStore(t)
	seedCalls(t, ctx, st)
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, c := range everyCall() {
		if err := callPromptly(t, ctx, st, c); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close = %v, want an error wrapping ErrClosed", c.name, err)
		}
	}
	if err := st.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
		t.Fatalf("second Close = %v, want nil or ErrClosed", err)
	}
}

// testDurability: after a restart, everything committed is there, and the
// store goes on where it stopped (versions, handled IDs).
func (s *suite) testDurability(t *testing.T) {
	if s.f.Reopen == nil {
		t.Skip("store does not support Reopen (Features.Reopen is nil)")
	}
	ctx := testContext(t)
	st := s.newStore(t)
	a1 := fullCommit("dur/a", 1, "d")
	a2 := fullCommit("dur/a", 2, "d")
	a2.CancelTimers = []string{a1.Timers[0].ID}
	a2.Meta.Status = "completed"
	b1 := fullCommit("dur/b", 1, "d")
	for _, c := range []store.Commit{a1, a2, b1} {
		mustAppend(t, ctx, st, cloneCommit(c))
	}
	if err := st.MarkDispatched(ctx, a1.Outbox[0].ID); err != nil {
		t.Fatalf("MarkDispatched: %v", err)
	}
	if err := st.DeleteTimers(ctx, b1.Timers[0].ID); err != nil {
		t.Fatalf("DeleteTimers: %v", err)
	}
	p := probe{
		streams: []string{"dur/a", "dur/b"},
		handled: [][2]string{{"dur/a", a1.Handled[0]}, {"dur/a", a2.Handled[0]}, {"dur/b", b1.Handled[0]}, {"dur/b", a1.Handled[0]}},
	}
	before := observe(t, ctx, st, p)
	if len(before.outbox) != 5 || len(before.timers) != 1 {
		t.Fatalf("before reopen: %d pending outbox entries and %d timers, want 5 and 1", len(before.outbox), len(before.timers))
	}

	st = s.reopen(t, st)
	s.cmp.requireSameState(t, "state after reopen", observe(t, ctx, st, p), before)

	appendFails(t, ctx, st, fullCommit("dur/a", 2, "again"), store.ErrConcurrency)
	again := fullCommit("dur/b", 2, "again")
	again.Handled = b1.Handled
	appendFails(t, ctx, st, again, store.ErrAlreadyHandled)
	a3 := fullCommit("dur/a", 3, "d")
	mustAppend(t, ctx, st, cloneCommit(a3))

	st = s.reopen(t, st)
	s.cmp.requireCommits(t, "Load(dur/a) after a second reopen", mustLoad(t, ctx, st, "dur/a", 0), []store.Commit{a1, a2, a3})
}
