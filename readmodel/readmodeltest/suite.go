package readmodeltest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/readmodel"
)

// Opener opens the store under test over one set of data: every call
// after the first reopens what the earlier ones wrote (the caller closes
// the previous one first). logSize is the change-log window to configure.
type Opener func(t *testing.T, logSize int) readmodel.Store

// NewData returns an Opener over new, empty data; the suite calls it once
// per test.
type NewData func(t *testing.T) Opener

// Run runs the suite. Stores the suite opens are closed by it or by
// t.Cleanup; closing twice must be harmless.
func Run(t *testing.T, newData NewData) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, open Opener)
	}{
		{"PutGetList", testPutGetList},
		{"Idempotent", testIdempotent},
		{"InOrder", testInOrder},
		{"AtomicRefusal", testAtomicRefusal},
		{"TxReadsOwnWrites", testTxReadsOwnWrites},
		{"ChangeLog", testChangeLog},
		{"ChangeLogWindow", testChangeLogWindow},
		{"Drop", testDrop},
		{"ConcurrentStreams", testConcurrentStreams},
		{"Durability", testDurability},
		{"BadInput", testBadInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newData(t)) })
	}
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openT(t *testing.T, open Opener, logSize int) readmodel.Store {
	t.Helper()
	s := open(t, logSize)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func body(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// put returns an Update function that puts key = {"n": n}.
func put(key string, n int) func(context.Context, readmodel.Tx) error {
	return func(_ context.Context, tx readmodel.Tx) error {
		return tx.Put(key, json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)))
	}
}

func mustUpdate(t *testing.T, s readmodel.Store, model, stream string, seq uint64, fn func(context.Context, readmodel.Tx) error) readmodel.Result {
	t.Helper()
	r, err := s.Update(ctxT(t), model, stream, seq, fn)
	if err != nil {
		t.Fatalf("update %s %s#%d: %v", model, stream, seq, err)
	}
	return r
}

func counter(t *testing.T, s readmodel.Store, model, key string) int {
	t.Helper()
	d, err := s.Get(ctxT(t), model, key)
	if err != nil {
		t.Fatalf("get %s/%s: %v", model, key, err)
	}
	var v struct{ N int }
	if err := json.Unmarshal(d.Body, &v); err != nil {
		t.Fatalf("get %s/%s: body %s: %v", model, key, d.Body, err)
	}
	return v.N
}

func checkpoint(t *testing.T, s readmodel.Store, model, stream string) uint64 {
	t.Helper()
	cp, err := s.Checkpoint(ctxT(t), model, stream)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func testPutGetList(t *testing.T, open Opener) {
	s := openT(t, open, 0)
	ctx := ctxT(t)
	if _, err := s.Get(ctx, "m", "a"); !errors.Is(err, readmodel.ErrNotFound) {
		t.Fatalf("get of a missing doc: %v, want ErrNotFound", err)
	}
	r := mustUpdate(t, s, "m", "s1", 1, put("b", 1))
	if !r.Applied || len(r.Changes) != 1 || r.Changes[0].Position != 1 || r.Changes[0].Version != 1 {
		t.Fatalf("first update: %+v, want applied with one change at position 1, version 1", r)
	}
	mustUpdate(t, s, "m", "s1", 2, put("a", 2))
	mustUpdate(t, s, "m", "s1", 3, put("b", 3))
	mustUpdate(t, s, "other", "s1", 1, put("a", 9))
	d, err := s.Get(ctx, "m", "b")
	if err != nil {
		t.Fatal(err)
	}
	if d.Model != "m" || d.Key != "b" || d.Version != 2 || d.Position != 3 || d.Stream != "s1" || d.Seq != 3 || d.UpdatedAt.IsZero() {
		t.Fatalf("doc b: %+v, want model m, version 2, position 3, from s1#3", d)
	}
	if counter(t, s, "m", "b") != 3 || counter(t, s, "other", "a") != 9 || counter(t, s, "m", "a") != 2 {
		t.Fatal("wrong bodies")
	}
	docs, err := s.List(ctx, "m", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[0].Key != "a" || docs[1].Key != "b" {
		t.Fatalf("list m: %+v, want a and b in key order, not other's", docs)
	}
	docs, err = s.List(ctx, "m", "a", 1)
	if err != nil || len(docs) != 1 || docs[0].Key != "b" {
		t.Fatalf("list m after a limit 1: %+v %v, want b", docs, err)
	}
	if cp := checkpoint(t, s, "m", "s1"); cp != 3 {
		t.Fatalf("checkpoint %d, want 3", cp)
	}
	if cp := checkpoint(t, s, "m", "s2"); cp != 0 {
		t.Fatalf("checkpoint of an unseen stream %d, want 0", cp)
	}
}

func testIdempotent(t *testing.T, open Opener) {
	s := openT(t, open, 0)
	mustUpdate(t, s, "m", "s", 1, put("k", 1))
	mustUpdate(t, s, "m", "s", 2, put("k", 2))
	for _, seq := range []uint64{1, 2} {
		called := false
		r := mustUpdate(t, s, "m", "s", seq, func(ctx context.Context, tx readmodel.Tx) error {
			called = true
			return tx.Put("k", json.RawMessage(`{"n":100}`))
		})
		if r.Applied || called {
			t.Fatalf("event %d again: applied %v, fn called %v; want neither", seq, r.Applied, called)
		}
	}
	if n := counter(t, s, "m", "k"); n != 2 {
		t.Fatalf("k = %d after duplicates, want 2", n)
	}
	d, _ := s.Get(ctxT(t), "m", "k")
	if d.Version != 2 {
		t.Fatalf("version %d after duplicates, want 2", d.Version)
	}
}

func testInOrder(t *testing.T, open Opener) {
	s := openT(t, open, 0)
	mustUpdate(t, s, "m", "s", 1, put("k", 1))
	called := false
	_, err := s.Update(ctxT(t), "m", "s", 3, func(context.Context, readmodel.Tx) error { called = true; return nil })
	if !errors.Is(err, readmodel.ErrOutOfOrder) || called {
		t.Fatalf("event 3 after 1: err %v, fn called %v; want ErrOutOfOrder and no call", err, called)
	}
	if cp := checkpoint(t, s, "m", "s"); cp != 1 {
		t.Fatalf("checkpoint %d after refused event, want 1", cp)
	}
	_, err = s.Update(ctxT(t), "m", "fresh", 2, put("x", 1))
	if !errors.Is(err, readmodel.ErrOutOfOrder) {
		t.Fatalf("event 2 of a new stream: %v, want ErrOutOfOrder", err)
	}
	// An event that changes nothing still moves the checkpoint.
	r := mustUpdate(t, s, "m", "s", 2, func(context.Context, readmodel.Tx) error { return nil })
	if !r.Applied || len(r.Changes) != 0 || checkpoint(t, s, "m", "s") != 2 {
		t.Fatalf("no-op event: %+v, checkpoint %d; want applied, no changes, checkpoint 2", r, checkpoint(t, s, "m", "s"))
	}
	mustUpdate(t, s, "m", "s", 3, put("k", 3))
	if n := counter(t, s, "m", "k"); n != 3 {
		t.Fatalf("k = %d, want 3", n)
	}
}

func testAtomicRefusal(t *testing.T, open Opener) {
	s := openT(t, open, 0)
	mustUpdate(t, s, "m", "s", 1, put("a", 1))
	boom := errors.New("handler failed")
	_, err := s.Update(ctxT(t), "m", "s", 2, func(_ context.Context, tx readmodel.Tx) error {
		if err := tx.Put("a", json.RawMessage(`{"n":2}`)); err != nil {
			return err
		}
		if err := tx.Put("b", json.RawMessage(`{"n":2}`)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update whose fn failed: %v, want the fn's error", err)
	}
	if counter(t, s, "m", "a") != 1 {
		t.Fatal("a changed by a failed update")
	}
	if _, err := s.Get(ctxT(t), "m", "b"); !errors.Is(err, readmodel.ErrNotFound) {
		t.Fatalf("b after failed update: %v, want ErrNotFound", err)
	}
	if cp := checkpoint(t, s, "m", "s"); cp != 1 {
		t.Fatalf("checkpoint %d after failed update, want 1", cp)
	}
	ch, _, err := s.Changes(ctxT(t), "m", 0, 0)
	if err != nil || len(ch) != 1 {
		t.Fatalf("changes after failed update: %d %v, want 1", len(ch), err)
	}
	// The same event succeeds afterwards, at the next position.
	r := mustUpdate(t, s, "m", "s", 2, put("b", 5))
	if !r.Applied || r.Changes[0].Position != 2 {
		t.Fatalf("retry: %+v, want applied at position 2", r)
	}
}

func testTxReadsOwnWrites(t *testing.T, open Opener) {
	s := openT(t, open, 0)
	mustUpdate(t, s, "m", "s", 1, put("a", 1))
	r := mustUpdate(t, s, "m", "s", 2, func(ctx context.Context, tx readmodel.Tx) error {
		d, ok, err := tx.Get(ctx, "a")
		if err != nil || !ok || string(d.Body) != `{"n":1}` || d.Version != 1 {
			return fmt.Errorf("get a before writing: %+v %v %v", d, ok, err)
		}
		if err := tx.Put("a", json.RawMessage(`{"n":2}`)); err != nil {
			return err
		}
		if d, ok, _ := tx.Get(ctx, "a"); !ok || string(d.Body) != `{"n":2}` {
			return fmt.Errorf("get a after put: %s %v", d.Body, ok)
		}
		if err := tx.Put("a", json.RawMessage(`{"n":3}`)); err != nil {
			return err
		}
		if err := tx.Delete("missing"); err != nil {
			return err
		}
		if _, ok, _ := tx.Get(ctx, "missing"); ok {
			return errors.New("missing exists")
		}
		return nil
	})
	// Two puts of one key are one change; deleting a missing doc none.
	if len(r.Changes) != 1 || r.Changes[0].Version != 2 || string(r.Changes[0].Body) != `{"n":3}` {
		t.Fatalf("changes %+v, want one change of a to version 2 with n 3", r.Changes)
	}
}

func testChangeLog(t *testing.T, open Opener) {
	s := openT(t, open, 0)
	mustUpdate(t, s, "m", "s1", 1, put("a", 1))
	mustUpdate(t, s, "m", "s2", 1, func(_ context.Context, tx readmodel.Tx) error {
		if err := tx.Put("b", json.RawMessage(`{"n":1}`)); err != nil {
			return err
		}
		return tx.Put("c", json.RawMessage(`{"n":1}`))
	})
	mustUpdate(t, s, "m", "s1", 2, func(_ context.Context, tx readmodel.Tx) error { return tx.Delete("a") })
	mustUpdate(t, s, "n", "s1", 1, put("z", 1))
	ch, oldest, err := s.Changes(ctxT(t), "m", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		key     string
		deleted bool
		stream  string
		seq     uint64
	}{{"a", false, "s1", 1}, {"b", false, "s2", 1}, {"c", false, "s2", 1}, {"a", true, "s1", 2}}
	if len(ch) != len(want) || oldest != 1 {
		t.Fatalf("changes of m: %+v oldest %d, want %d from 1", ch, oldest, len(want))
	}
	for i, w := range want {
		c := ch[i]
		if c.Position != uint64(i+1) || c.Model != "m" || c.Key != w.key || c.Deleted != w.deleted || c.Stream != w.stream || c.Seq != w.seq {
			t.Fatalf("change %d: %+v, want %+v at position %d", i, c, w, i+1)
		}
	}
	if ch[3].Body != nil || ch[0].Version != 1 {
		t.Fatalf("delete change carries a body or put change no version: %+v", ch)
	}
	if _, err := s.Get(ctxT(t), "m", "a"); !errors.Is(err, readmodel.ErrNotFound) {
		t.Fatalf("deleted doc: %v, want ErrNotFound", err)
	}
	ch, _, err = s.Changes(ctxT(t), "m", 2, 1)
	if err != nil || len(ch) != 1 || ch[0].Position != 3 {
		t.Fatalf("changes after 2 limit 1: %+v %v, want position 3", ch, err)
	}
	ch, _, err = s.Changes(ctxT(t), "m", 4, 0)
	if err != nil || len(ch) != 0 {
		t.Fatalf("changes after the last: %+v %v, want none", ch, err)
	}
}

func testChangeLogWindow(t *testing.T, open Opener) {
	s := openT(t, open, 5)
	for i := 1; i <= 12; i++ {
		mustUpdate(t, s, "m", "s", uint64(i), put("k", i))
	}
	ch, oldest, err := s.Changes(ctxT(t), "m", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := s.Head(ctxT(t), "m"); err != nil || h != 12 {
		t.Fatalf("head %d %v, want 12", h, err)
	}
	if oldest != 8 || len(ch) != 5 || ch[0].Position != 8 || ch[4].Position != 12 {
		t.Fatalf("window of 5 after 12 changes: oldest %d, %d changes from %v; want 8..12", oldest, len(ch), ch)
	}
}

func testDrop(t *testing.T, open Opener) {
	s := openT(t, open, 0)
	mustUpdate(t, s, "m", "s", 1, put("a", 1))
	mustUpdate(t, s, "m", "s", 2, put("b", 1))
	mustUpdate(t, s, "keep", "s", 1, put("a", 1))
	if err := s.Drop(ctxT(t), "m"); err != nil {
		t.Fatal(err)
	}
	docs, err := s.List(ctxT(t), "m", "", 0)
	if err != nil || len(docs) != 0 {
		t.Fatalf("list after drop: %v %v, want empty", docs, err)
	}
	if cp := checkpoint(t, s, "m", "s"); cp != 0 {
		t.Fatalf("checkpoint after drop %d, want 0", cp)
	}
	if ch, _, _ := s.Changes(ctxT(t), "m", 0, 0); len(ch) != 0 {
		t.Fatalf("changes after drop: %v, want none", ch)
	}
	if h, err := s.Head(ctxT(t), "m"); err != nil || h != 2 {
		t.Fatalf("head after drop: %d %v, want 2 (kept)", h, err)
	}
	if counter(t, s, "keep", "a") != 1 || checkpoint(t, s, "keep", "s") != 1 {
		t.Fatal("drop of m touched model keep")
	}
	r := mustUpdate(t, s, "m", "s", 1, put("a", 7))
	if !r.Applied || r.Changes[0].Position != 3 || r.Changes[0].Version != 1 {
		t.Fatalf("first update after drop: %+v, want applied at position 3 (positions go on), version 1", r)
	}
}

func testConcurrentStreams(t *testing.T, open Opener) {
	s := openT(t, open, 0)
	const streams, events = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("s%d", i)
			for seq := uint64(1); seq <= events; seq++ {
				_, err := s.Update(context.Background(), "m", stream, seq, func(ctx context.Context, tx readmodel.Tx) error {
					d, ok, err := tx.Get(ctx, "total")
					if err != nil {
						return err
					}
					var v struct{ N int }
					if ok {
						if err := json.Unmarshal(d.Body, &v); err != nil {
							return err
						}
					}
					return tx.Put("total", json.RawMessage(fmt.Sprintf(`{"n":%d}`, v.N+1)))
				})
				if err != nil {
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
	if n := counter(t, s, "m", "total"); n != streams*events {
		t.Fatalf("total %d after %d racing increments, want %d (lost updates)", n, streams*events, streams*events)
	}
	ch, _, err := s.Changes(ctxT(t), "m", 0, readmodel.MaxListLimit)
	if err != nil || len(ch) != streams*events {
		t.Fatalf("%d changes (%v), want %d", len(ch), err, streams*events)
	}
	for i, c := range ch {
		if c.Position != uint64(i+1) {
			t.Fatalf("change %d at position %d: positions not dense", i, c.Position)
		}
	}
}

func testDurability(t *testing.T, open Opener) {
	s := open(t, 0)
	mustUpdate(t, s, "m", "s", 1, put("a", 1))
	mustUpdate(t, s, "m", "s", 2, put("a", 2))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctxT(t), "m", "a"); !errors.Is(err, readmodel.ErrClosed) {
		t.Fatalf("get after close: %v, want ErrClosed", err)
	}
	s2 := openT(t, open, 0)
	if counter(t, s2, "m", "a") != 2 || checkpoint(t, s2, "m", "s") != 2 {
		t.Fatal("reopened store lost the document or the checkpoint")
	}
	r := mustUpdate(t, s2, "m", "s", 2, put("a", 99))
	if r.Applied {
		t.Fatal("reopened store applied a duplicate")
	}
	r = mustUpdate(t, s2, "m", "s", 3, put("b", 1))
	if r.Changes[0].Position != 3 {
		t.Fatalf("position after reopen %d, want 3", r.Changes[0].Position)
	}
}

func testBadInput(t *testing.T, open Opener) {
	s := openT(t, open, 0)
	ctx := ctxT(t)
	cases := []struct {
		name string
		call func() error
	}{
		{"empty model", func() error { _, err := s.Update(ctx, "", "s", 1, put("k", 1)); return err }},
		{"empty stream", func() error { _, err := s.Update(ctx, "m", "", 1, put("k", 1)); return err }},
		{"sequence 0", func() error { _, err := s.Update(ctx, "m", "s", 0, put("k", 1)); return err }},
		{"model with |", func() error { _, err := s.Update(ctx, "a|b", "s", 1, put("k", 1)); return err }},
		{"empty key", func() error { _, err := s.Update(ctx, "m", "s", 1, put("", 1)); return err }},
		{"body not an object", func() error {
			_, err := s.Update(ctx, "m", "s", 1, func(_ context.Context, tx readmodel.Tx) error { return tx.Put("k", json.RawMessage(`[1]`)) })
			return err
		}},
		{"body not JSON", func() error {
			_, err := s.Update(ctx, "m", "s", 1, func(_ context.Context, tx readmodel.Tx) error { return tx.Put("k", json.RawMessage(`{`)) })
			return err
		}},
		{"get with empty key", func() error { _, err := s.Get(ctx, "m", ""); return err }},
	}
	for _, c := range cases {
		if err := c.call(); !errors.Is(err, readmodel.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", c.name, err)
		}
	}
	if cp := checkpoint(t, s, "m", "s"); cp != 0 {
		t.Fatalf("refused updates moved the checkpoint to %d", cp)
	}
}
