package storetest

import (
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/store"
)

// testAppendLoad: what is appended is loaded back, every field of it.
func (s *suite) testAppendLoad(t *testing.T) {
	t.Run("EveryFieldRoundTrips", func(t *testing.T) {
		ctx := testContext(t)
		st := s.newStore(t)
		c1 := fullCommit("rt", 1, "a")
		c2 := fullCommit("rt", 2, "a")
		c2.CancelTimers = []string{c1.Timers[0].ID}
		c2.Meta = nil
		c3 := store.Commit{Stream: "rt", Version: 3, Handled: []string{"only-handled"}, At: at(3 * time.Second)}
		want := []store.Commit{c1, c2, c3}
		for _, c := range want {
			mustAppend(t, ctx, st, cloneCommit(c))
		}
		s.cmp.requireCommits(t, "Load(rt, 0)", mustLoad(t, ctx, st, "rt", 0), want)
	})

	t.Run("LoadFromVersion", func(t *testing.T) {
		ctx := testContext(t)
		st := s.newStore(t)
		var all []store.Commit
		for v := uint64(1); v <= 3; v++ {
			c := fullCommit("from", v, "a")
			all = append(all, c)
			mustAppend(t, ctx, st, cloneCommit(c))
		}
		tests := []struct {
			from uint64
			want []store.Commit
		}{
			{0, all},
			{1, all},
			{2, all[1:]},
			{3, all[2:]},
			{4, nil},
			{1 << 40, nil},
		}
		for _, tc := range tests {
			got := mustLoad(t, ctx, st, "from", tc.from)
			s.cmp.requireCommits(t, "Load(from, "+itoa(tc.from)+")", got, tc.want)
		}
	})

	t.Run("UnknownStreamIsEmpty", func(t *testing.T) {
		ctx := testContext(t)
		st := s.newStore(t)
		mustAppend(t, ctx, st, bareCommit("known", 1, "a"))
		if got := mustLoad(t, ctx, st, "unknown", 0); len(got) != 0 {
			t.Fatalf("Load(unknown) returned %d commits, want none", len(got))
		}
	})

	t.Run("StreamsWithSharedPrefixesStayApart", func(t *testing.T) {
		ctx := testContext(t)
		st := s.newStore(t)
		streams := []struct {
			name     string
			versions uint64
		}{
			{"pre", 3}, {"pre/x", 1}, {"pre-1", 2}, {"prefix", 1}, {"pr", 2}, {"agg/inventory/order-17", 2},
		}
		want := map[string][]store.Commit{}
		for _, sv := range streams {
			for v := uint64(1); v <= sv.versions; v++ {
				c := bareCommit(sv.name, v, "a")
				want[sv.name] = append(want[sv.name], c)
				mustAppend(t, ctx, st, cloneCommit(c))
			}
		}
		for _, sv := range streams {
			s.cmp.requireCommits(t, "Load("+sv.name+")", mustLoad(t, ctx, st, sv.name, 0), want[sv.name])
			if info := mustInfo(t, ctx, st, sv.name); info.Version != sv.versions {
				t.Fatalf("Info(%s).Version = %d, want %d", sv.name, info.Version, sv.versions)
			}
		}
	})

	t.Run("StoreKeepsNoReferenceToTheCallersCommit", func(t *testing.T) {
		ctx := testContext(t)
		st := s.newStore(t)
		c := fullCommit("alias", 1, "a")
		want := cloneCommit(c)
		mustAppend(t, ctx, st, c)
		c.Events[0].Headers["x-empty"] = "changed"
		c.Events[0].Payload[2] = 'X'
		c.Outbox[0].ID = "changed"
		c.Handled[0] = "changed"
		c.Timers[0].Message.Headers["x-empty"] = "changed"
		c.Meta.Status = "changed"
		s.cmp.requireCommits(t, "Load(alias) after changing the appended commit", mustLoad(t, ctx, st, "alias", 0), []store.Commit{want})
		info := mustInfo(t, ctx, st, "alias")
		var d diffs
		s.cmp.meta(&d, "Info(alias).Meta", info.Meta, *want.Meta)
		report(t, "Info after changing the appended commit", d)
	})
}

func itoa(v uint64) string {
	const digits = "0123456789"
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; v > 0; v /= 10 {
		i--
		b[i] = digits[v%10]
	}
	return string(b[i:])
}
