package mongo_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/mongo"
)

// commandLog records the filters of the commands a store sends.
type commandLog struct {
	mu  sync.Mutex
	bad []string
	ops int
}

// check notes every update, delete and lookup filter that is not
// {_id: <string>}. Finds on outbox, timers and journal are the sweeps,
// which query by due time on purpose (small collections: see doc.go).
func (l *commandLog) check(e *event.CommandStartedEvent) {
	var field, coll string
	switch e.CommandName {
	case "update":
		field, coll = "updates", e.Command.Lookup("update").StringValue()
	case "delete":
		field, coll = "deletes", e.Command.Lookup("delete").StringValue()
	case "find":
		coll = e.Command.Lookup("find").StringValue()
		if slices.Contains([]string{"outbox", "timers", "journal"}, coll) {
			return
		}
		l.note(e.CommandName, coll, e.Command.Lookup("filter"))
		return
	default:
		return
	}
	stmts, err := e.Command.Lookup(field).Array().Values()
	if err != nil {
		l.mu.Lock()
		l.bad = append(l.bad, fmt.Sprintf("%s %s: no %s array: %v", e.CommandName, coll, field, err))
		l.mu.Unlock()
		return
	}
	for _, st := range stmts {
		l.note(e.CommandName, coll, st.Document().Lookup("q"))
	}
}

func (l *commandLog) note(cmd, coll string, filter bson.RawValue) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops++
	doc, ok := filter.DocumentOK()
	elems, err := doc.Elements()
	if ok && err == nil && len(elems) == 1 && elems[0].Key() == "_id" && elems[0].Value().Type == bson.TypeString {
		return
	}
	l.bad = append(l.bad, fmt.Sprintf("%s on %s filters by %s", cmd, coll, filter))
}

// TestHotPathFiltersByIDAlone: every update, delete and lookup the store
// sends while it appends commits (with handled IDs, outbox messages,
// timers, cancellations and Meta), loads, answers Info and Handled,
// dispatches, fires timers, snapshots and keeps keys names one document
// by {_id: <string>}. That is the only filter FerretDB (the dev server)
// answers from an index; any other made it read every document of the
// collection, which made commits cost more the more there were. List and
// the sweeps (PendingOutbox, DueTimers) query other fields on purpose.
func TestHotPathFiltersByIDAlone(t *testing.T) {
	uri := testenv.MongoDB(t)
	log := &commandLog{}
	s := open(t, uri, freshDatabase(t, uri), mongo.WithCommandMonitor(&event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) { log.check(e) }}))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	at := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	msg := func(id string) message.Envelope {
		return message.Envelope{ID: id, Kind: message.KindCommand, Type: "test.Do.v1", Key: "k", Payload: []byte(`{}`), OccurredAt: at}
	}
	meta := func(status string) *store.Meta {
		return &store.Meta{Kind: "saga", Type: "test", Status: status, CreatedAt: at, UpdatedAt: at}
	}
	commits := []store.Commit{
		{Stream: "saga/a", Version: 1, Handled: []string{"m1"}, Outbox: []message.Envelope{msg("o1"), msg("o2")},
			Timers: []store.Timer{{ID: "t1", Stream: "saga/a", DueAt: at.Add(time.Hour), Message: msg("tm1")}}, Meta: meta("running"), At: at},
		{Stream: "agg/x/1", Version: 1, Handled: []string{"m1"}, At: at},
		{Stream: "saga/a", Version: 2, Handled: []string{"m2"}, CancelTimers: []string{"t1"},
			Timers: []store.Timer{{ID: "t2", Stream: "saga/a", DueAt: at, Message: msg("tm2")}}, Outbox: []message.Envelope{msg("o3")}, At: at},
		{Stream: "saga/a", Version: 3, Handled: []string{"m3"}, Meta: meta("completed"), At: at},
		{Stream: "agg/x/1", Version: 2, Handled: []string{"m4"}, At: at},
	}
	for _, c := range commits {
		if err := s.Append(ctx, c); err != nil {
			t.Fatalf("append %s v%d: %v", c.Stream, c.Version, err)
		}
	}
	if _, err := s.Load(ctx, "saga/a", 1); err != nil {
		t.Fatalf("load: %v", err)
	}
	info, err := s.Info(ctx, "saga/a")
	if err != nil || info.Version != 3 || info.Meta.Status != "completed" {
		t.Fatalf("info = %+v, %v; want v3, completed", info, err)
	}
	if _, ok, err := s.Handled(ctx, "saga/a", "m2"); err != nil || !ok {
		t.Fatalf("handled m2 = %v, %v; want true", ok, err)
	}
	if err := s.MarkDispatched(ctx, "o1", "o2", "o3"); err != nil {
		t.Fatalf("mark dispatched: %v", err)
	}
	if pending, err := s.PendingOutbox(ctx, at.Add(time.Hour), 10); err != nil || len(pending) != 0 {
		t.Fatalf("pending after dispatch = %v, %v; want none", pending, err)
	}
	due, err := s.DueTimers(ctx, at.Add(time.Minute), 10)
	if err != nil || len(due) != 1 || due[0].ID != "t2" {
		t.Fatalf("due timers = %+v, %v; want t2 only (t1 was cancelled)", due, err)
	}
	if err := s.DeleteTimers(ctx, "t2"); err != nil {
		t.Fatalf("delete timers: %v", err)
	}
	for _, v := range []uint64{2, 3, 2} { // the last one is older and must not win
		if err := s.SaveSnapshot(ctx, store.Snapshot{Stream: "saga/a", Version: v, State: []byte(fmt.Sprintf(`{"v":%d}`, v)), At: at}); err != nil {
			t.Fatalf("save snapshot v%d: %v", v, err)
		}
	}
	snap, ok, err := s.LoadSnapshot(ctx, "saga/a")
	if err != nil || !ok || snap.Version != 3 {
		t.Fatalf("snapshot = v%d, %v, %v; want v3 (an older save does not replace a newer one)", snap.Version, ok, err)
	}
	key := store.SubjectKey{Subject: "customer-1", ID: "k1", Secret: make([]byte, 16), CreatedAt: at}
	if _, err := s.CreateKey(ctx, key); err != nil {
		t.Fatalf("create key: %v", err)
	}
	if _, _, err := s.LoadKey(ctx, "customer-1"); err != nil {
		t.Fatalf("load key: %v", err)
	}
	if err := s.DeleteKey(ctx, "customer-1"); err != nil {
		t.Fatalf("delete key: %v", err)
	}

	log.mu.Lock()
	defer log.mu.Unlock()
	if log.ops < 20 {
		t.Fatalf("only %d filtered operations seen: is the monitor wired?", log.ops)
	}
	for _, b := range log.bad {
		t.Errorf("not an _id lookup: %s", b)
	}
	t.Logf("%d filtered operations, %d not by _id alone", log.ops, len(log.bad))
}

// TestMarkDispatchedOfEntriesAnotherStoreWrote: MarkDispatched deletes by
// _id the entries its own store wrote or listed; an entry written by
// another store (another engine process) is deleted by message ID.
func TestMarkDispatchedOfEntriesAnotherStoreWrote(t *testing.T) {
	uri := testenv.MongoDB(t)
	db := freshDatabase(t, uri)
	writer, other := open(t, uri, db), open(t, uri, db)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	at := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	var outbox []message.Envelope
	for _, id := range []string{"o1", "o2", "o3"} {
		outbox = append(outbox, message.Envelope{ID: id, Kind: message.KindCommand, Type: "test.Do.v1", Key: "k", Payload: []byte(`{}`), OccurredAt: at})
	}
	if err := writer.Append(ctx, store.Commit{Stream: "saga/a", Version: 1, Outbox: outbox, At: at}); err != nil {
		t.Fatal(err)
	}
	if err := other.MarkDispatched(ctx, "o1", "o3"); err != nil {
		t.Fatalf("mark dispatched by the other store: %v", err)
	}
	if err := writer.MarkDispatched(ctx, "o1"); err != nil { // known to the writer, deleted already
		t.Fatalf("mark dispatched again by the writer: %v", err)
	}
	pending, err := writer.PendingOutbox(ctx, at, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 1 || pending[0].ID != "o2" {
		t.Fatalf("pending = %+v, want o2 only", pending)
	}
	if err := other.MarkDispatched(ctx, "o2"); err != nil {
		t.Fatal(err)
	}
	if pending, err := writer.PendingOutbox(ctx, at, 10); err != nil || len(pending) != 0 {
		t.Fatalf("pending after all were dispatched = %+v, %v; want none", pending, err)
	}
}
