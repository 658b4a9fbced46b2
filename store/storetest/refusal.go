package storetest

import (
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/store"
)

// testInvalidCommits: malformed commits fail with ErrInvalidCommit and
// leave nothing behind.
func (s *suite) testInvalidCommits(t *testing.T) {
	const stream = "invalid"
	tests := []struct {
		name  string
		spoil func(c *store.Commit)
	}{
		{"EmptyStream", func(c *store.Commit) { c.Stream = "" }},
		{"VersionZero", func(c *store.Commit) { c.Version = 0 }},
		{"EmptyHandledID", func(c *store.Commit) { c.Handled = append(c.Handled, "") }},
		{"HandledIDTwice", func(c *store.Commit) { c.Handled = append(c.Handled, c.Handled[0]) }},
		{"OutboxMessageWithoutID", func(c *store.Commit) { c.Outbox[1].ID = "" }},
		{"TimerWithoutID", func(c *store.Commit) { c.Timers[0].ID = "" }},
		{"TimerWithoutDueTime", func(c *store.Commit) { c.Timers[0].DueAt = time.Time{} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			st := s.newStore(t)
			c := fullCommit(stream, 1, "bad")
			p := probe{
				streams: []string{stream},
				handled: [][2]string{{stream, c.Handled[0]}},
			}
			before := observe(t, ctx, st, p)
			tc.spoil(&c)
			appendFails(t, ctx, st, c, store.ErrInvalidCommit)
			s.cmp.requireSameState(t, "state after an invalid commit", observe(t, ctx, st, p), before)
			requireNotFound(t, ctx, st, stream)
		})
	}

	t.Run("Gaps", func(t *testing.T) {
		if !s.f.DetectsGaps {
			t.Skip("store does not detect version gaps (Features.DetectsGaps is false)")
		}
		ctx := testContext(t)
		st := s.newStore(t)
		p := probe{streams: []string{"gap"}, handled: [][2]string{{"gap", inID("gap", 2, "a")}}}

		before := observe(t, ctx, st, p)
		appendFails(t, ctx, st, fullCommit("gap", 2, "a"), store.ErrInvalidCommit)
		s.cmp.requireSameState(t, "state after a first commit at v2", observe(t, ctx, st, p), before)

		mustAppend(t, ctx, st, fullCommit("gap", 1, "a"))
		mustAppend(t, ctx, st, fullCommit("gap", 2, "a"))
		p.handled = append(p.handled, [2]string{"gap", inID("gap", 4, "a")})
		before = observe(t, ctx, st, p)
		appendFails(t, ctx, st, fullCommit("gap", 4, "a"), store.ErrInvalidCommit)
		s.cmp.requireSameState(t, "state after v4 on a stream at v2", observe(t, ctx, st, p), before)

		mustAppend(t, ctx, st, fullCommit("gap", 3, "a"))
		if got := versions(mustLoad(t, ctx, st, "gap", 0)); len(got) != 3 {
			t.Fatalf("Load(gap) versions = %v, want [1 2 3]", got)
		}
	})
}

// testAtomicRefusal (I1): a commit that is refused for any reason writes
// none of its parts: no events, outbox entries, handled IDs, timers or
// timer cancellations, and no change of Meta. The store then still takes
// the next valid commit.
func (s *suite) testAtomicRefusal(t *testing.T) {
	const stream = "atomic"
	seed := fullCommit(stream, 1, "seed")
	tests := []struct {
		name    string
		gaps    bool // needs Features.DetectsGaps
		version uint64
		change  func(c *store.Commit)
		want    error
	}{
		{name: "Conflict", version: 1, want: store.ErrConcurrency},
		{name: "AlreadyHandled", version: 2, want: store.ErrAlreadyHandled, change: func(c *store.Commit) {
			c.Handled = append(c.Handled, seed.Handled[0])
		}},
		{name: "Invalid", version: 2, want: store.ErrInvalidCommit, change: func(c *store.Commit) {
			c.Outbox[1].ID = ""
		}},
		{name: "Gap", gaps: true, version: 3, want: store.ErrInvalidCommit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.gaps && !s.f.DetectsGaps {
				t.Skip("store does not detect version gaps (Features.DetectsGaps is false)")
			}
			ctx := testContext(t)
			st := s.newStore(t)
			mustAppend(t, ctx, st, cloneCommit(seed))

			bad := fullCommit(stream, tc.version, "bad")
			bad.Handled = append(bad.Handled, "bad-extra")
			bad.CancelTimers = []string{seed.Timers[0].ID}
			bad.Meta.Status = "refused"
			if tc.change != nil {
				tc.change(&bad)
			}
			p := probe{
				streams: []string{stream},
				handled: [][2]string{{stream, seed.Handled[0]}, {stream, "bad-extra"}, {stream, inID(stream, tc.version, "bad")}},
			}
			before := observe(t, ctx, st, p)
			appendFails(t, ctx, st, bad, tc.want)
			s.cmp.requireSameState(t, "state after a refused commit", observe(t, ctx, st, p), before)

			good := fullCommit(stream, 2, "good")
			mustAppend(t, ctx, st, cloneCommit(good))
			s.cmp.requireCommits(t, "Load after the next valid commit", mustLoad(t, ctx, st, stream, 0), []store.Commit{seed, good})
		})
	}
}
