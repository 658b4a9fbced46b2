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

// TestFirstCommitReadsNothingBeforeWriting: a stream's first commit (every
// saga's start, every aggregate's first command) is written without a
// read: no handled-marker lookup, since no earlier commit can have
// handled its messages, and no head lookup, since its head is inserted.
// Later commits still make both checks, and the first commit's head is
// there with its Meta. On the dev server each lookup is a round trip of a
// few milliseconds, and these two were 7 of a bench saga's 30.
func TestFirstCommitReadsNothingBeforeWriting(t *testing.T) {
	uri := testenv.MongoDB(t)
	finds := &findCounter{byColl: map[string]int{}}
	s := open(t, uri, freshDatabase(t, uri), mongo.WithCommandMonitor(finds.monitor()))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	at := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	meta := func(status string) *store.Meta {
		return &store.Meta{Kind: "saga", Type: "test", Status: status, CreatedAt: at, UpdatedAt: at}
	}
	finds.take()

	if err := s.Append(ctx, store.Commit{Stream: "saga/a", Version: 1, Handled: []string{"m1"}, Meta: meta("running"), At: at}); err != nil {
		t.Fatalf("append v1: %v", err)
	}
	if got := finds.take(); got["heads"] != 0 || got["handled"] != 0 || got["commits"] != 0 {
		t.Errorf("finds while appending v1 = %v; want none on heads, handled and commits", got)
	}
	info, err := s.Info(ctx, "saga/a")
	if err != nil || info.Version != 1 || info.Meta.Status != "running" {
		t.Fatalf("info after v1 = %+v, %v; want v1, running", info, err)
	}

	finds.take()
	if err := s.Append(ctx, store.Commit{Stream: "saga/a", Version: 2, Handled: []string{"m2"}, Meta: meta("completed"), At: at}); err != nil {
		t.Fatalf("append v2: %v", err)
	}
	if got := finds.take(); got["heads"] != 1 || got["handled"] != 1 {
		t.Errorf("finds while appending v2 = %v; want one on heads (the head must not move back) and one on handled (I3)", got)
	}
	info, err = s.Info(ctx, "saga/a")
	if err != nil || info.Version != 2 || info.Meta.Status != "completed" {
		t.Fatalf("info after v2 = %+v, %v; want v2, completed", info, err)
	}

	// A second first commit still loses, on its _id, and the head stays.
	err = s.Append(ctx, store.Commit{Stream: "saga/a", Version: 1, Handled: []string{"m2"}, Meta: meta("running"), At: at})
	if !errors.Is(err, store.ErrConcurrency) {
		t.Fatalf("append v1 again = %v; want ErrConcurrency", err)
	}
	info, err = s.Info(ctx, "saga/a")
	if err != nil || info.Version != 2 || info.Meta.Status != "completed" {
		t.Fatalf("info after the refused v1 = %+v, %v; want v2, completed", info, err)
	}
}
