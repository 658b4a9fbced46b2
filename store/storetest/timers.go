package storetest

import (
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

// testTimers (I5): timers are stored with their due time, come back due
// earliest first, and stay until cancelled by a commit or deleted, also
// across a restart.
func (s *suite) testTimers(t *testing.T) {
	timer := func(id, stream string, due time.Time) store.Timer {
		return store.Timer{
			ID:      id,
			Stream:  stream,
			DueAt:   due,
			Message: envelope("fire-"+id, message.KindCommand, stream, 0, base),
		}
	}
	withTimers := func(stream string, v uint64, timers ...store.Timer) store.Commit {
		c := bareCommit(stream, v, "t")
		c.Timers = timers
		return c
	}
	t1 := timer("t1", "tm/a", at(3*time.Second))
	t2 := timer("t2", "tm/b", at(1*time.Second))
	t3 := timer("t3", "tm/a", at(2*time.Second))
	t4 := timer("t4", "tm/b", at(time.Hour))

	requireNext := func(t *testing.T, st store.Store, want time.Time, wantOK bool) {
		t.Helper()
		got, ok, err := st.NextTimer(testContext(t))
		if err != nil {
			t.Fatalf("NextTimer: %v", err)
		}
		var d diffs
		eq(&d, "NextTimer ok", ok, wantOK)
		if wantOK {
			s.cmp.time(&d, "NextTimer", got, want)
		}
		report(t, "NextTimer", d)
	}

	t.Run("NoTimers", func(t *testing.T) {
		st := s.newStore(t)
		requireNext(t, st, time.Time{}, false)
		s.cmp.requireTimers(t, "DueTimers", mustDue(t, testContext(t), st, farFuture, 100), nil)
	})

	t.Run("DueEarliestFirst", func(t *testing.T) {
		ctx := testContext(t)
		st := s.newStore(t)
		mustAppend(t, ctx, st, withTimers("tm/a", 1, t1, t3))
		mustAppend(t, ctx, st, withTimers("tm/b", 1, t4, t2))
		tests := []struct {
			name  string
			now   time.Time
			limit int
			want  []store.Timer
		}{
			{"NoneDue", at(0), 100, nil},
			{"OneDue", at(1500 * time.Millisecond), 100, []store.Timer{t2}},
			{"TwoDue", at(2500 * time.Millisecond), 100, []store.Timer{t2, t3}},
			{"DueAtNowCounts", at(3 * time.Second), 100, []store.Timer{t2, t3, t1}},
			{"Limit", at(3 * time.Second), 2, []store.Timer{t2, t3}},
			{"All", farFuture, 100, []store.Timer{t2, t3, t1, t4}},
		}
		for _, tc := range tests {
			s.cmp.requireTimers(t, "DueTimers "+tc.name, mustDue(t, ctx, st, tc.now, tc.limit), tc.want)
		}
		requireNext(t, st, t2.DueAt, true)
	})

	t.Run("CancelledByLaterCommit", func(t *testing.T) {
		ctx := testContext(t)
		st := s.newStore(t)
		mustAppend(t, ctx, st, withTimers("tm/a", 1, t1, t3))
		c2 := bareCommit("tm/a", 2, "t")
		c2.CancelTimers = []string{t3.ID, "no-such-timer"}
		mustAppend(t, ctx, st, cloneCommit(c2))
		s.cmp.requireTimers(t, "DueTimers after cancelling t3", mustDue(t, ctx, st, farFuture, 100), []store.Timer{t1})
		requireNext(t, st, t1.DueAt, true)
		got := mustLoad(t, ctx, st, "tm/a", 2)
		s.cmp.requireCommits(t, "Load(tm/a, 2)", got, []store.Commit{c2})
	})

	t.Run("DeleteTimers", func(t *testing.T) {
		ctx := testContext(t)
		st := s.newStore(t)
		mustAppend(t, ctx, st, withTimers("tm/a", 1, t1, t3))
		mustAppend(t, ctx, st, withTimers("tm/b", 1, t2, t4))
		steps := []struct {
			name   string
			delete []string
			want   []store.Timer
		}{
			{"Nothing", nil, []store.Timer{t2, t3, t1, t4}},
			{"Unknown", []string{"no-such-timer"}, []store.Timer{t2, t3, t1, t4}},
			{"EarliestAndUnknown", []string{t2.ID, "no-such-timer"}, []store.Timer{t3, t1, t4}},
			{"TwoMore", []string{t1.ID, t4.ID}, []store.Timer{t3}},
			{"Again", []string{t1.ID, t2.ID}, []store.Timer{t3}},
			{"Last", []string{t3.ID}, nil},
		}
		for _, step := range steps {
			if err := st.DeleteTimers(ctx, step.delete...); err != nil {
				t.Fatalf("%s: DeleteTimers(%q): %v", step.name, step.delete, err)
			}
			s.cmp.requireTimers(t, "DueTimers after DeleteTimers "+step.name, mustDue(t, ctx, st, farFuture, 100), step.want)
			if len(step.want) > 0 {
				requireNext(t, st, step.want[0].DueAt, true)
			} else {
				requireNext(t, st, time.Time{}, false)
			}
		}
	})

	t.Run("PastTimerFiresAfterReopen", func(t *testing.T) {
		ctx := testContext(t)
		st := s.newStore(t)
		past := timer("past", "tm/p", time.Now().Add(-time.Minute))
		future := timer("future", "tm/p", time.Now().Add(time.Hour))
		mustAppend(t, ctx, st, withTimers("tm/p", 1, past, future))
		st = s.reopen(t, st)
		s.cmp.requireTimers(t, "DueTimers(now) after reopen", mustDue(t, ctx, st, time.Now(), 100), []store.Timer{past})
		if err := st.DeleteTimers(ctx, past.ID); err != nil {
			t.Fatalf("DeleteTimers: %v", err)
		}
		s.cmp.requireTimers(t, "DueTimers(now) after DeleteTimers", mustDue(t, ctx, st, time.Now(), 100), nil)
		st = s.reopen(t, st)
		s.cmp.requireTimers(t, "DueTimers(now) after a second reopen", mustDue(t, ctx, st, time.Now(), 100), nil)
		requireNext(t, st, future.DueAt, true)
	})
}
