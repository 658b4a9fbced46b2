package storetest

import (
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/store"
)

// testOutbox (I4): the messages a commit emits stay pending, oldest commit
// first, until MarkDispatched, also across a restart.
func (s *suite) testOutbox(t *testing.T) {
	// Three commits on two streams, a second apart, two messages each.
	commits := []store.Commit{
		fullCommit("ob/a", 1, "x"),
		fullCommit("ob/b", 1, "x"),
		fullCommit("ob/a", 2, "x"),
	}
	for i := range commits {
		commits[i].At = at(time.Duration(i+1) * time.Second)
	}
	var all []store.OutboxEntry
	for _, c := range commits {
		all = append(all, outboxEntriesOf(c)...)
	}
	seed := func(t *testing.T) store.Store {
		t.Helper()
		ctx := testContext(t)
		st := s.newStore(t)
		for _, c := range commits {
			mustAppend(t, ctx, st, cloneCommit(c))
		}
		return st
	}

	t.Run("PendingOldestFirst", func(t *testing.T) {
		ctx := testContext(t)
		st := seed(t)
		tests := []struct {
			name      string
			olderThan time.Time
			limit     int
			want      []store.OutboxEntry
		}{
			{"All", farFuture, 100, all},
			{"Limit1", farFuture, 1, all[:1]},
			{"Limit3", farFuture, 3, all[:3]},
			{"OlderThanBetweenCommits", at(1500 * time.Millisecond), 100, all[:2]},
			{"OlderThanEqualsCommitTime", at(2 * time.Second), 100, all[:4]},
			{"OlderThanAndLimit", at(2 * time.Second), 3, all[:3]},
			{"NothingThatOld", at(0), 100, nil},
		}
		for _, tc := range tests {
			s.cmp.requireOutbox(t, "PendingOutbox "+tc.name, mustPending(t, ctx, st, tc.olderThan, tc.limit), tc.want)
		}
	})

	t.Run("MarkDispatched", func(t *testing.T) {
		ctx := testContext(t)
		st := seed(t)
		steps := []struct {
			name string
			mark []string
			want []store.OutboxEntry
		}{
			{"Nothing", nil, all},
			{"UnknownOnly", []string{"no-such-message"}, all},
			{"TwoAndUnknown", []string{all[0].ID, "no-such-message", all[3].ID}, []store.OutboxEntry{all[1], all[2], all[4], all[5]}},
			{"SameAgain", []string{all[0].ID, all[3].ID}, []store.OutboxEntry{all[1], all[2], all[4], all[5]}},
			{"Rest", []string{all[5].ID, all[1].ID, all[2].ID, all[4].ID}, nil},
		}
		for _, step := range steps {
			if err := st.MarkDispatched(ctx, step.mark...); err != nil {
				t.Fatalf("%s: MarkDispatched(%q): %v", step.name, step.mark, err)
			}
			s.cmp.requireOutbox(t, "PendingOutbox after MarkDispatched "+step.name, mustPending(t, ctx, st, farFuture, 100), step.want)
		}
		// Dispatching is not undoing: the commits keep their messages.
		s.cmp.requireCommits(t, "Load(ob/a) after dispatching", mustLoad(t, ctx, st, "ob/a", 0), []store.Commit{commits[0], commits[2]})
	})

	t.Run("PendingSurvivesReopen", func(t *testing.T) {
		ctx := testContext(t)
		st := seed(t)
		if err := st.MarkDispatched(ctx, all[1].ID); err != nil {
			t.Fatalf("MarkDispatched: %v", err)
		}
		st = s.reopen(t, st)
		want := append([]store.OutboxEntry{all[0]}, all[2:]...)
		s.cmp.requireOutbox(t, "PendingOutbox after reopen", mustPending(t, ctx, st, farFuture, 100), want)
		if err := st.MarkDispatched(ctx, all[0].ID); err != nil {
			t.Fatalf("MarkDispatched after reopen: %v", err)
		}
		s.cmp.requireOutbox(t, "PendingOutbox after reopen and MarkDispatched", mustPending(t, ctx, st, farFuture, 100), all[2:])
	})
}
