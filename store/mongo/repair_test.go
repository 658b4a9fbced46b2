package mongo

import (
	"github.com/sagaflow/sagaflow/internal/testenv"

	"context"
	"errors"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

// TestRepairAfterCrash plays a writer that died after inserting its
// commits but before their derived documents: the commit documents and
// the journal entry exist, nothing else does. Reads must already see the
// commit (Info, Load, Handled, Append's I3 check); Open must repair the
// outbox entries and timers.
func TestRepairAfterCrash(t *testing.T) {
	uri := testenv.MongoDB(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	db := "sagaflow_test_" + newToken()[:12]
	t.Cleanup(func() { _ = DropDatabase(context.Background(), uri, db) })

	s, err := Open(ctx, uri, WithDatabase(db))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Minute)
	c1 := store.Commit{Stream: "crash", Version: 1, Handled: []string{"m1"}, At: at,
		Outbox: []message.Envelope{{ID: "out-1", Kind: message.KindEvent, Type: "t.v1", Payload: []byte(`{}`)}},
		Timers: []store.Timer{{ID: "timer-1", Stream: "crash", DueAt: at, Message: message.Envelope{ID: "fire-1", Kind: message.KindCommand, Type: "t.v1"}}},
		Meta:   &store.Meta{Kind: "saga", Type: "T", Status: "running", CreatedAt: at, UpdatedAt: at},
	}
	enc, err := encodeCommit(c1, newToken())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.journal.InsertOne(ctx, journalDoc{ID: "j1", IDs: []string{enc.doc.ID}, At: at.UnixNano()}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.commits.InsertOne(ctx, enc.doc); err != nil {
		t.Fatal(err)
	}

	// Before any repair: reads see the commit.
	if info, err := s.Info(ctx, "crash"); err != nil || info.Version != 1 || info.Meta.Status != "running" {
		t.Fatalf("Info before repair = %+v, %v", info, err)
	}
	if v, ok, err := s.Handled(ctx, "crash", "m1"); err != nil || !ok || v != 1 {
		t.Fatalf("Handled(m1) before repair = %d, %t, %v", v, ok, err)
	}
	again := store.Commit{Stream: "crash", Version: 2, Handled: []string{"m1"}, At: at}
	if err := s.Append(ctx, again); !errors.Is(err, store.ErrAlreadyHandled) {
		t.Fatalf("Append handling m1 again = %v, want ErrAlreadyHandled", err)
	}

	// Open repairs the journal entry (older than the grace period).
	s = reopen(ctx, t, s, uri, db)
	pending, err := s.PendingOutbox(ctx, time.Now(), 10)
	if err != nil || len(pending) != 1 || pending[0].ID != "out-1" {
		t.Fatalf("PendingOutbox after repair = %+v, %v", pending, err)
	}
	due, err := s.DueTimers(ctx, time.Now(), 10)
	if err != nil || len(due) != 1 || due[0].ID != "timer-1" {
		t.Fatalf("DueTimers after repair = %+v, %v", due, err)
	}
	list, err := s.List(ctx, store.ListFilter{Status: []string{"running"}})
	if err != nil || len(list) != 1 || list[0].Stream != "crash" {
		t.Fatalf("List after repair = %+v, %v", list, err)
	}
	if n, err := s.journal.CountDocuments(ctx, map[string]any{}); err != nil || n != 0 {
		t.Fatalf("journal entries after repair: %d, %v", n, err)
	}
}

// TestRepairBehindANewerHeadWritesEveryOtherHead plays a repair of a
// group commit whose first stream has moved on since: its head is newer,
// so rewriting it hits a duplicate key. The heads of the entry's other
// streams must still be written. (FerretDB 1.24 stops an unordered bulk
// update at its first error; a store that took the duplicate key for
// "done" left those heads missing, and the repair deleted the entry.)
func TestRepairBehindANewerHeadWritesEveryOtherHead(t *testing.T) {
	uri := testenv.MongoDB(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	db := "sagaflow_test_" + newToken()[:12]
	t.Cleanup(func() { _ = DropDatabase(context.Background(), uri, db) })

	s, err := Open(ctx, uri, WithDatabase(db))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Minute)
	commit := func(stream string, v uint64, status string) store.Commit {
		return store.Commit{Stream: stream, Version: v, At: at,
			Meta: &store.Meta{Kind: "saga", Type: "T", Status: status, CreatedAt: at, UpdatedAt: at}}
	}
	// The crashed writer's group commit: moved (v1, first), then five
	// other streams, all v1; commits and journal entry only.
	streams := []string{"moved", "s1", "s2", "s3", "s4", "s5"}
	journal := journalDoc{ID: "j1", At: at.UnixNano()}
	for _, st := range streams {
		enc, err := encodeCommit(commit(st, 1, "running"), newToken())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.commits.InsertOne(ctx, enc.doc); err != nil {
			t.Fatal(err)
		}
		journal.IDs = append(journal.IDs, enc.doc.ID)
	}
	if _, err := s.journal.InsertOne(ctx, journal); err != nil {
		t.Fatal(err)
	}
	// The stream moved on under a live writer: its head is at v2.
	if err := s.Append(ctx, commit("moved", 2, "completed")); err != nil {
		t.Fatal(err)
	}

	// Open repairs the entry (older than the grace period).
	s = reopen(ctx, t, s, uri, db)
	list, err := s.List(ctx, store.ListFilter{Status: []string{"running"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, info := range list {
		got = append(got, info.Stream)
	}
	if len(got) != len(streams)-1 {
		t.Fatalf("running streams after the repair = %v, want %v", got, streams[1:])
	}
	for _, st := range got {
		if st == "moved" {
			t.Fatalf("the repair moved the head of %q back to v1: running streams %v", st, got)
		}
	}
	if n, err := s.journal.CountDocuments(ctx, map[string]any{}); err != nil || n != 0 {
		t.Fatalf("journal entries after repair: %d, %v", n, err)
	}
}

// reopen closes s and opens its database again, as a restarted engine
// would (Open repairs journal entries older than the grace period).
func reopen(ctx context.Context, t *testing.T, s *Store, uri, db string) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, uri, WithDatabase(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
