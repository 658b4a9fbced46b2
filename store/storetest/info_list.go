package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/store"
)

// testInfoAndList: Info gives a stream's version and latest Meta; List
// finds streams by Meta, ordered by name, page by page.
func (s *suite) testInfoAndList(t *testing.T) {
	meta := func(kind, typ, status string, updated time.Duration) *store.Meta {
		return &store.Meta{
			Kind:          kind,
			Type:          typ,
			Status:        status,
			CorrelationID: "corr-" + typ + "-" + status,
			CreatedAt:     base,
			UpdatedAt:     at(updated),
		}
	}

	t.Run("InfoUnknownStream", func(t *testing.T) {
		ctx := testContext(t)
		st := s.newStore(t)
		mustAppend(t, ctx, st, fullCommit("known", 1, "i"))
		if _, err := st.Info(ctx, "unknown"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Info(unknown) error = %v, want ErrNotFound", err)
		}
	})

	t.Run("InfoKeepsLatestMeta", func(t *testing.T) {
		ctx := testContext(t)
		st := s.newStore(t)
		m1 := meta("saga", "storetest.Flow", "running", time.Second)
		m3 := meta("saga", "storetest.Flow", "completed", 3*time.Second)
		steps := []struct {
			meta *store.Meta
			want store.StreamInfo
		}{
			{m1, store.StreamInfo{Stream: "info", Version: 1, Meta: *m1}},
			{nil, store.StreamInfo{Stream: "info", Version: 2, Meta: *m1}},
			{m3, store.StreamInfo{Stream: "info", Version: 3, Meta: *m3}},
		}
		for i, step := range steps {
			c := bareCommit("info", uint64(i+1), "i")
			c.Meta = step.meta
			mustAppend(t, ctx, st, c)
			s.cmp.requireInfos(t, "Info(info) after v"+itoa(c.Version), []store.StreamInfo{mustInfo(t, ctx, st, "info")}, []store.StreamInfo{step.want})
		}
	})

	// Streams for List, appended out of name order.
	type seeded struct {
		stream string
		meta   *store.Meta
	}
	streams := []seeded{
		{"list/e", meta("saga", "T1", "failed", 5*time.Second)},
		{"list/a", meta("saga", "T1", "running", 1*time.Second)},
		{"list/c", meta("saga", "T2", "running", 3*time.Second)},
		{"list/b", meta("saga", "T1", "completed", 2*time.Second)},
		{"list/d", meta("aggregate", "Order", "", 4*time.Second)},
		{"list/f", meta("aggregate", "Order", "", 6*time.Second)},
		{"list/g", meta("saga", "T2", "compensated", 7*time.Second)},
	}
	infoOf := map[string]store.StreamInfo{}
	for _, sd := range streams {
		infoOf[sd.stream] = store.StreamInfo{Stream: sd.stream, Version: 1, Meta: *sd.meta}
	}
	infos := func(names ...string) []store.StreamInfo {
		out := make([]store.StreamInfo, len(names))
		for i, n := range names {
			out[i] = infoOf[n]
		}
		return out
	}
	seed := func(t *testing.T) store.Store {
		t.Helper()
		ctx := testContext(t)
		st := s.newStore(t)
		for _, sd := range streams {
			c := bareCommit(sd.stream, 1, "l")
			c.Meta = sd.meta
			mustAppend(t, ctx, st, c)
		}
		return st
	}

	t.Run("ListFilters", func(t *testing.T) {
		ctx := testContext(t)
		st := seed(t)
		tests := []struct {
			name   string
			filter store.ListFilter
			want   []store.StreamInfo
		}{
			{"All", store.ListFilter{}, infos("list/a", "list/b", "list/c", "list/d", "list/e", "list/f", "list/g")},
			{"Kind", store.ListFilter{Kind: "saga"}, infos("list/a", "list/b", "list/c", "list/e", "list/g")},
			{"KindAndType", store.ListFilter{Kind: "saga", Type: "T1"}, infos("list/a", "list/b", "list/e")},
			{"Type", store.ListFilter{Type: "Order"}, infos("list/d", "list/f")},
			{"OneStatus", store.ListFilter{Status: []string{"running"}}, infos("list/a", "list/c")},
			{"AnyOfStatuses", store.ListFilter{Status: []string{"completed", "failed", "compensated"}}, infos("list/b", "list/e", "list/g")},
			{"TypeAndStatus", store.ListFilter{Type: "T2", Status: []string{"running", "failed"}}, infos("list/c")},
			{"NoMatch", store.ListFilter{Kind: "nothing"}, nil},
			{"UnknownStatus", store.ListFilter{Status: []string{"nothing"}}, nil},
			{"After", store.ListFilter{After: "list/b"}, infos("list/c", "list/d", "list/e", "list/f", "list/g")},
			{"AfterANameThatIsNoStream", store.ListFilter{After: "list/bb"}, infos("list/c", "list/d", "list/e", "list/f", "list/g")},
			{"AfterTheLast", store.ListFilter{After: "list/g"}, nil},
			{"Limit", store.ListFilter{Limit: 2}, infos("list/a", "list/b")},
			{"KindAfterLimit", store.ListFilter{Kind: "saga", After: "list/a", Limit: 2}, infos("list/b", "list/c")},
		}
		for _, tc := range tests {
			got, err := st.List(ctx, tc.filter)
			if err != nil {
				t.Fatalf("List %s: %v", tc.name, err)
			}
			s.cmp.requireInfos(t, "List "+tc.name, got, tc.want)
		}
	})

	t.Run("ListPages", func(t *testing.T) {
		ctx := testContext(t)
		st := seed(t)
		tests := []struct {
			filter store.ListFilter
			pages  [][]string
		}{
			{store.ListFilter{Limit: 3}, [][]string{{"list/a", "list/b", "list/c"}, {"list/d", "list/e", "list/f"}, {"list/g"}}},
			{store.ListFilter{Kind: "saga", Limit: 2}, [][]string{{"list/a", "list/b"}, {"list/c", "list/e"}, {"list/g"}}},
			{store.ListFilter{Kind: "aggregate", Limit: 2}, [][]string{{"list/d", "list/f"}}},
		}
		for _, tc := range tests {
			f := tc.filter
			for page := 0; ; page++ {
				got, err := st.List(ctx, f)
				if err != nil {
					t.Fatalf("List(%+v): %v", f, err)
				}
				var want []string // after the last page: nothing
				if page < len(tc.pages) {
					want = tc.pages[page]
				}
				s.cmp.requireInfos(t, fmt.Sprintf("List(%+v) page %d", tc.filter, page+1), got, infos(want...))
				if len(got) == 0 {
					break
				}
				f.After = got[len(got)-1].Stream
			}
		}
	})

	t.Run("ListSeesLatestMeta", func(t *testing.T) {
		ctx := testContext(t)
		st := seed(t)
		c := bareCommit("list/a", 2, "l")
		c.Meta = meta("saga", "T1", "completed", 8*time.Second)
		mustAppend(t, ctx, st, c)
		got, err := st.List(ctx, store.ListFilter{Status: []string{"completed"}})
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		want := infos("list/a", "list/b")
		want[0].Version, want[0].Meta = 2, *c.Meta
		s.cmp.requireInfos(t, "List completed after list/a completed", got, want)
	})
}
