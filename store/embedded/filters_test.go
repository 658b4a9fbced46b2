package embedded

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

func TestIndexedIDsForgetADeletionOnlyOnceItIsDurable(t *testing.T) {
	ids := newIndexedIDs()
	ids.written("a")
	ids.written("b")
	ids.settle(true)

	ids.deleted("a")
	ids.settle(false) // the batch failed: a's entry is still stored
	if !ids.mayHave("a") {
		t.Fatal("a was forgotten after a failed batch deleted it")
	}
	ids.deleted("a")
	ids.written("a") // deleted and written again in one batch
	ids.deleted("b")
	ids.settle(true)
	if !ids.mayHave("a") {
		t.Error("a, written again after its deletion in the same batch, was forgotten")
	}
	if ids.mayHave("b") {
		t.Error("b is still held after a durable batch deleted it")
	}
}

func TestStreamFilterHasEveryStreamAdded(t *testing.T) {
	f := newStreamFilter()
	for i := range 10_000 {
		f.add(fmt.Sprintf("agg/T/%d", i))
	}
	for i := range 10_000 {
		if s := fmt.Sprintf("agg/T/%d", i); !f.mayHave(s) {
			t.Fatalf("%s was added but the filter says absent", s)
		}
	}
	absent := 0
	for i := range 10_000 {
		if !f.mayHave(fmt.Sprintf("saga/%d", i)) {
			absent++
		}
	}
	if absent < 9_900 {
		t.Errorf("the filter said absent for %d of 10,000 streams never added, want nearly all", absent)
	}
}

// filterFixture is a store holding stream "s" v1 with outbox message
// outID and timer timerID.
func filterFixture(t *testing.T, s *Store) (outID, timerID string) {
	t.Helper()
	c := testCommit("s", 1)
	c.Timers = []store.Timer{{ID: "s/timer", Stream: "s", DueAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
		Message: message.Envelope{ID: "s/fire", Kind: message.KindCommand, Type: "test.Fire.v1", Key: "s", Destination: "q"}}}
	if err := s.Append(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	return c.Outbox[0].ID, c.Timers[0].ID
}

// pendingAndDue returns the IDs of the store's pending outbox entries and
// of its timers due by 2031.
func pendingAndDue(t *testing.T, s *Store) (outbox, timers []string) {
	t.Helper()
	ctx := t.Context()
	entries, err := s.PendingOutbox(ctx, time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		outbox = append(outbox, e.ID)
	}
	due, err := s.DueTimers(ctx, time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, tm := range due {
		timers = append(timers, tm.ID)
	}
	return outbox, timers
}

func TestFiltersAreReadFromDiskAtOpen(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	outID, timerID := filterFixture(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v := loadVersions(t, s, "s"); len(v) != 1 {
		t.Fatalf("after reopening, stream s has %d commits, want 1 (the stream filter must hold it)", len(v))
	}
	if err := s.Append(ctx, testCommit("s", 1)); err == nil || !strings.Contains(err.Error(), "stream is at v1") {
		t.Errorf("a second v1 of s after reopening: %v, want a concurrency conflict", err)
	}
	if err := s.MarkDispatched(ctx, outID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTimers(ctx, timerID); err != nil {
		t.Fatal(err)
	}
	if out, timers := pendingAndDue(t, s); len(out) != 0 || len(timers) != 0 {
		t.Errorf("after reopening, dispatching and deleting: outbox %v and timers %v left, want none", out, timers)
	}
}

func TestFailedBatchKeepsWhatItWouldHaveDeleted(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	outID, timerID := filterFixture(t, s)
	batch := []*request{
		{ctx: ctx, op: opMarkDispatched, ids: []string{outID}, done: make(chan error, 1)},
		{ctx: ctx, op: opDeleteTimers, ids: []string{timerID}, done: make(chan error, 1)},
		{ctx: ctx, op: opAppend, commit: nil, done: make(chan error, 1)}, // a bug: the transaction fails
	}
	s.commitBatch(batch)
	for i, err := range answers(batch) {
		if err == nil {
			t.Fatalf("request %d of the failed transaction succeeded", i)
		}
	}
	if out, timers := pendingAndDue(t, s); len(out) != 1 || len(timers) != 1 {
		t.Fatalf("after the failed transaction: outbox %v, timers %v; want both still there", out, timers)
	}
	// The entries are still stored, so the filters must still send these
	// deletions to the store.
	if err := s.MarkDispatched(ctx, outID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTimers(ctx, timerID); err != nil {
		t.Fatal(err)
	}
	if out, timers := pendingAndDue(t, s); len(out) != 0 || len(timers) != 0 {
		t.Errorf("after dispatching and deleting again: outbox %v and timers %v left, want none", out, timers)
	}
}
