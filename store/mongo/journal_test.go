package mongo

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/store"
)

// journalDeleteLog records the journal deletes a store sends: how many
// commands, and the _ids each one deletes.
type journalDeleteLog struct {
	mu       sync.Mutex
	commands int
	perCmd   []int
	ids      map[string]int
}

func (l *journalDeleteLog) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.CommandName != "delete" || e.Command.Lookup("delete").StringValue() != "journal" {
			return
		}
		stmts, _ := e.Command.Lookup("deletes").Array().Values()
		l.mu.Lock()
		defer l.mu.Unlock()
		l.commands++
		l.perCmd = append(l.perCmd, len(stmts))
		for _, st := range stmts {
			if id, ok := st.Document().Lookup("q", "_id").StringValueOK(); ok {
				l.ids[id]++
			}
		}
	}}
}

// TestFinishedJournalEntriesAreDeletedInBulks: the journal entries of
// finished group commits are deleted in bulks of at most maxOpsPerBulk,
// each once, and none is left once the writer is idle (40 group commits:
// two full bulks, and 8 entries that only the idle writer deletes) or
// once the store is closed after a burst. Batches of one commit each make
// every Append its own group commit.
func TestFinishedJournalEntriesAreDeletedInBulks(t *testing.T) {
	uri := testenv.MongoDB(t)
	db := "sagaflow_test_" + newToken()[:12]
	t.Cleanup(func() { _ = DropDatabase(context.Background(), uri, db) })
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	at := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)

	burst := func(s *Store, prefix string, n int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				if err := s.Append(ctx, store.Commit{Stream: fmt.Sprintf("%s-%d", prefix, i), Version: 1, At: at}); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("append: %v", err)
		}
	}
	journalEntries := func(s *Store) int64 {
		t.Helper()
		n, err := s.journal.CountDocuments(ctx, bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	log := &journalDeleteLog{ids: map[string]int{}}
	s, err := Open(ctx, uri, WithDatabase(db), WithMaxBatch(1), WithCommandMonitor(log.monitor()))
	if err != nil {
		t.Fatal(err)
	}
	burst(s, "idle", 40)
	deadline := time.Now().Add(10 * time.Second)
	for journalEntries(s) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := journalEntries(s); n != 0 {
		t.Fatalf("%d journal entries left 10 s after the last Append returned; want none (the idle writer deletes them)", n)
	}
	log.mu.Lock()
	if len(log.ids) != 40 {
		t.Errorf("%d distinct journal entries deleted; want 40", len(log.ids))
	}
	for id, n := range log.ids {
		if n != 1 {
			t.Errorf("journal entry %s deleted %d times; want once", id, n)
		}
	}
	for i, n := range log.perCmd {
		if n > maxOpsPerBulk {
			t.Errorf("delete command %d deletes %d entries; want at most %d", i, n, maxOpsPerBulk)
		}
	}
	t.Logf("40 group commits, %d journal delete commands %v", log.commands, log.perCmd)
	log.mu.Unlock()

	burst(s, "closed", 40)
	s = reopen(ctx, t, s, uri, db)
	if n := journalEntries(s); n != 0 {
		t.Fatalf("%d journal entries left after Close; want none", n)
	}
}
