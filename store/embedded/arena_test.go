package embedded

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/recordjson"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

// arenaCommit is a commit with every part the arena holds: the commit,
// two outbox entries, two timers and a Meta, each with content of its own.
func arenaCommit(stream string, v uint64, n int) store.Commit {
	at := time.Date(2031, 2, 3, 4, 5, 6, n, time.UTC)
	env := func(what string, i int) message.Envelope {
		return message.Envelope{
			ID: fmt.Sprintf("%s/v%d/%s%d", stream, v, what, i), Kind: message.KindCommand, Type: "test.Do.v1",
			Key: stream, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d,"what":%q,"pad":"%s"}`, n, what, bytes.Repeat([]byte{'a' + byte(n%26)}, n%300))),
		}
	}
	return store.Commit{
		Stream:  stream,
		Version: v,
		Events:  []message.Envelope{env("evt", 0)},
		Outbox:  []message.Envelope{env("out", 0), env("out", 1)},
		Timers: []store.Timer{
			{ID: fmt.Sprintf("%s/v%d/timer0", stream, v), Stream: stream, DueAt: at.Add(time.Hour), Message: env("fire", 0)},
			{ID: fmt.Sprintf("%s/v%d/timer1", stream, v), Stream: stream, DueAt: at.Add(2 * time.Hour), Message: env("fire", 1)},
		},
		Meta: &store.Meta{Kind: "saga", Type: "test.Flow", Status: fmt.Sprintf("status-%d", n), CreatedAt: at, UpdatedAt: at},
		At:   at,
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := recordjson.Marshal(v)
	if err != nil {
		t.Fatalf("Marshal(%T): %v", v, err)
	}
	return b
}

// TestEncodedCommitValuesAreTheRecordsJSON: the values cut from one arena
// are byte for byte what each record encodes to on its own (the stored
// format did not change), and release gives the arena back and drops
// every slice of it.
func TestEncodedCommitValuesAreTheRecordsJSON(t *testing.T) {
	s := openTest(t)
	c := arenaCommit("saga/a", 3, 250)
	enc, err := s.encodeCommit(c)
	if err != nil {
		t.Fatalf("encodeCommit: %v", err)
	}
	if want := mustMarshal(t, c); !bytes.Equal(enc.value, want) {
		t.Errorf("commit value\n %q\nwant %q", enc.value, want)
	}
	for i, m := range c.Outbox {
		want := mustMarshal(t, store.OutboxEntry{ID: m.ID, Stream: c.Stream, Version: c.Version, Message: m, At: c.At})
		if !bytes.Equal(enc.outbox[i].value, want) {
			t.Errorf("outbox entry %d\n %q\nwant %q", i, enc.outbox[i].value, want)
		}
	}
	for i, tm := range c.Timers {
		if want := mustMarshal(t, tm); !bytes.Equal(enc.timers[i].value, want) {
			t.Errorf("timer %d\n %q\nwant %q", i, enc.timers[i].value, want)
		}
	}
	if want := headValue(c.Version, mustMarshal(t, c.Meta)); !bytes.Equal(enc.head, want) {
		t.Errorf("head %q, want %q", enc.head, want)
	}
	// Each value is capped at its own end: appending to one cannot
	// overwrite the next.
	if cap(enc.value) != len(enc.value) || cap(enc.outbox[0].value) != len(enc.outbox[0].value) {
		t.Errorf("values share room past their ends: cap %d of len %d", cap(enc.value), len(enc.value))
	}
	enc.release()
	if enc.arena != nil || enc.value != nil || enc.head != nil || enc.outbox[1].value != nil || enc.timers[1].value != nil {
		t.Errorf("after release the commit still holds slices of its arena: %+v", enc)
	}
	enc.release() // a second release is harmless

	noMeta := arenaCommit("saga/b", 1, 1)
	noMeta.Meta = nil
	enc, err = s.encodeCommit(noMeta)
	if err != nil {
		t.Fatalf("encodeCommit without meta: %v", err)
	}
	if enc.head != nil {
		t.Errorf("a commit without Meta has head %q, want none (the head keeps its meta)", enc.head)
	}
	enc.release()
}

// TestCommitsFromReusedArenasKeepTheirBytes appends commits from several
// goroutines through the writer, so that arenas given back by one round
// are encoded into again while other commits wait, and reads every
// commit, outbox entry, timer and head back as it was appended.
func TestCommitsFromReusedArenasKeepTheirBytes(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	const writers, perWriter = 8, 60
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := uint64(1); v <= perWriter; v++ {
				if err := s.Append(ctx, arenaCommit(fmt.Sprintf("saga/w%d", w), v, w*perWriter+int(v))); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	wantOutbox := map[string]store.OutboxEntry{}
	wantTimers := map[string]store.Timer{}
	for w := range writers {
		stream := fmt.Sprintf("saga/w%d", w)
		got, err := s.Load(ctx, stream, 1)
		if err != nil {
			t.Fatalf("Load(%s): %v", stream, err)
		}
		if len(got) != perWriter {
			t.Fatalf("%s has %d commits, want %d", stream, len(got), perWriter)
		}
		var last store.Commit
		for i, c := range got {
			want := arenaCommit(stream, uint64(i+1), w*perWriter+i+1)
			if !bytes.Equal(mustMarshal(t, c), mustMarshal(t, want)) {
				t.Fatalf("%s v%d read back as\n %s\nwant %s", stream, i+1, mustMarshal(t, c), mustMarshal(t, want))
			}
			for _, m := range want.Outbox {
				wantOutbox[m.ID] = store.OutboxEntry{ID: m.ID, Stream: stream, Version: want.Version, Message: m, At: want.At}
			}
			for _, tm := range want.Timers {
				wantTimers[tm.ID] = tm
			}
			last = want
		}
		info, err := s.Info(ctx, stream)
		if err != nil {
			t.Fatalf("Info(%s): %v", stream, err)
		}
		if info.Version != perWriter || !reflect.DeepEqual(info.Meta, *last.Meta) {
			t.Errorf("%s head: v%d %+v, want v%d %+v", stream, info.Version, info.Meta, perWriter, *last.Meta)
		}
	}

	pending, err := s.PendingOutbox(ctx, time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC), 10*len(wantOutbox))
	if err != nil {
		t.Fatalf("PendingOutbox: %v", err)
	}
	checkReadBack(t, "outbox entry", pending, func(e store.OutboxEntry) string { return e.ID }, wantOutbox)
	due, err := s.DueTimers(ctx, time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC), 10*len(wantTimers))
	if err != nil {
		t.Fatalf("DueTimers: %v", err)
	}
	checkReadBack(t, "timer", due, func(tm store.Timer) string { return tm.ID }, wantTimers)
}

// checkReadBack checks that got holds each record of want, by ID, encoded
// to the same bytes, and nothing else.
func checkReadBack[T any](t *testing.T, what string, got []T, id func(T) string, want map[string]T) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d of %s read back, want %d", len(got), what, len(want))
	}
	for _, g := range got {
		w, ok := want[id(g)]
		if !ok || !bytes.Equal(mustMarshal(t, g), mustMarshal(t, w)) {
			t.Fatalf("%s %s read back as\n %s\nwant %s", what, id(g), mustMarshal(t, g), mustMarshal(t, w))
		}
	}
}
