package mongo_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/mongo"
)

// findCounter counts the find commands a store sends, per collection.
type findCounter struct {
	mu     sync.Mutex
	byColl map[string]int
}

func (f *findCounter) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.CommandName != "find" {
			return
		}
		coll, _ := e.Command.Lookup("find").StringValueOK()
		f.mu.Lock()
		defer f.mu.Unlock()
		f.byColl[coll]++
	}}
}

// take returns the counts since the last take and starts again from zero.
func (f *findCounter) take() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.byColl
	f.byColl = map[string]int{}
	return out
}

// TestCommitsReadOnlyWhatTheWriterDoesNotKnow: a stream's first commit
// (every saga's start, every aggregate's first command) is written without
// a read: no handled-marker lookup, since no earlier commit can have
// handled its messages, and no head lookup, since its head is inserted.
// The next commit through the same store looks up its handled IDs (I3)
// but not the head, which that store wrote; a commit through another
// store (another engine process) reads the head and the predecessor too.
// Every head is there with its Meta, and a refused first commit leaves
// the newest head in place. On the dev server each lookup is a round trip
// of a few milliseconds; the skipped ones were 10 of a bench saga's 30.
func TestCommitsReadOnlyWhatTheWriterDoesNotKnow(t *testing.T) {
	uri := testenv.MongoDB(t)
	db := freshDatabase(t, uri)
	finds, otherFinds := &findCounter{byColl: map[string]int{}}, &findCounter{byColl: map[string]int{}}
	s := open(t, uri, db, mongo.WithCommandMonitor(finds.monitor()))
	other := open(t, uri, db, mongo.WithCommandMonitor(otherFinds.monitor()))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	at := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	commit := func(v uint64, handled, status string) store.Commit {
		return store.Commit{Stream: "saga/a", Version: v, Handled: []string{handled}, At: at,
			Meta: &store.Meta{Kind: "saga", Type: "test", Status: status, CreatedAt: at, UpdatedAt: at}}
	}
	checkHead := func(what string, v uint64, status string) {
		t.Helper()
		info, err := s.Info(ctx, "saga/a")
		if err != nil || info.Version != v || info.Meta.Status != status {
			t.Fatalf("info after %s = %+v, %v; want v%d, %s", what, info, err, v, status)
		}
	}
	steps := []struct {
		what               string
		st                 *mongo.Store
		finds              *findCounter
		c                  store.Commit
		heads, handled, cs int
	}{
		{"v1", s, finds, commit(1, "m1", "running"), 0, 0, 0},
		{"v2 through the same store", s, finds, commit(2, "m2", "running"), 0, 1, 0},
		{"v3 through another store", other, otherFinds, commit(3, "m3", "completed"), 1, 1, 1},
	}
	for _, st := range steps {
		st.finds.take()
		if err := st.st.Append(ctx, st.c); err != nil {
			t.Fatalf("append %s: %v", st.what, err)
		}
		got := st.finds.take()
		if got["heads"] != st.heads || got["handled"] != st.handled || got["commits"] != st.cs {
			t.Errorf("finds while appending %s = %v; want %d on heads, %d on handled, %d on commits", st.what, got, st.heads, st.handled, st.cs)
		}
		checkHead(st.what, st.c.Version, st.c.Meta.Status)
	}

	err := s.Append(ctx, commit(1, "m4", "running"))
	if !errors.Is(err, store.ErrConcurrency) {
		t.Fatalf("append v1 again = %v; want ErrConcurrency", err)
	}
	checkHead("the refused v1", 3, "completed")
}
