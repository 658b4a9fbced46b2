package storetest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/store"
)

// stateFor returns snapshot state bytes that a store must keep exactly:
// not valid UTF-8, with a NUL byte and the characters HTML escaping would
// rewrite.
func stateFor(stream string, version uint64) []byte {
	return append([]byte(`{"stream":"`+stream+`","v":`+itoa(version)+`,"<&>":"grüße"}`), 0x00, 0xff, 0xfe)
}

func snapshotOf(stream string, version uint64) store.Snapshot {
	return store.Snapshot{
		Stream:  stream,
		Version: version,
		State:   stateFor(stream, version),
		At:      at(time.Duration(version)*time.Second + 500*time.Millisecond),
	}
}

func (c comparer) snapshot(d *diffs, path string, got, want store.Snapshot) {
	eq(d, path+".Stream", got.Stream, want.Stream)
	eq(d, path+".Version", got.Version, want.Version)
	if !bytes.Equal(got.State, want.State) {
		d.add(path+".State", string(got.State), string(want.State))
	}
	c.time(d, path+".At", got.At, want.At)
}

// requireSnapshot checks LoadSnapshot(stream) against want (nil: none).
func (s *suite) requireSnapshot(t *testing.T, st store.Store, stream string, want *store.Snapshot) {
	t.Helper()
	got, ok, err := st.LoadSnapshot(testContext(t), stream)
	if err != nil {
		t.Fatalf("LoadSnapshot(%s): %v", stream, err)
	}
	var d diffs
	eq(&d, "ok", ok, want != nil)
	if ok && want != nil {
		s.cmp.snapshot(&d, "snapshot", got, *want)
	}
	report(t, "LoadSnapshot("+stream+")", d)
}

func mustSaveSnapshot(t *testing.T, st store.Store, snap store.Snapshot) {
	t.Helper()
	if err := st.SaveSnapshot(testContext(t), snap); err != nil {
		t.Fatalf("SaveSnapshot(%s v%d): %v", snap.Stream, snap.Version, err)
	}
}

// testSnapshots: the latest snapshot of a stream comes back byte for byte,
// an older save never replaces a newer one, and a reader that starts at a
// snapshot and loads the commits after it sees exactly the later commits.
func (s *suite) testSnapshots(t *testing.T) {
	t.Run("UnknownStream", func(t *testing.T) {
		ctx := testContext(t)
		st := s.newStore(t)
		mustAppend(t, ctx, st, bareCommit("snap/known", 1, "s"))
		mustSaveSnapshot(t, st, snapshotOf("snap/known", 1))
		s.requireSnapshot(t, st, "snap/unknown", nil)
		s.requireSnapshot(t, st, "snap/know", nil) // a prefix of a stream that has one
	})

	t.Run("SaveAndLoadLatest", func(t *testing.T) {
		st := s.newStore(t)
		for _, v := range []uint64{1, 3, 7} {
			snap := snapshotOf("snap/a", v)
			mustSaveSnapshot(t, st, snap)
			s.requireSnapshot(t, st, "snap/a", &snap)
		}
		other := snapshotOf("snap/b", 2)
		mustSaveSnapshot(t, st, other)
		want := snapshotOf("snap/a", 7)
		s.requireSnapshot(t, st, "snap/a", &want)
		s.requireSnapshot(t, st, "snap/b", &other)
	})

	t.Run("SameVersionReplaces", func(t *testing.T) {
		st := s.newStore(t)
		mustSaveSnapshot(t, st, snapshotOf("snap/same", 4))
		again := snapshotOf("snap/same", 4)
		again.State = []byte(`{"again":true}`)
		mustSaveSnapshot(t, st, again)
		s.requireSnapshot(t, st, "snap/same", &again)
	})

	t.Run("OlderSaveDoesNotWin", func(t *testing.T) {
		st := s.newStore(t)
		newer := snapshotOf("snap/old", 5)
		mustSaveSnapshot(t, st, newer)
		for _, v := range []uint64{4, 1} {
			mustSaveSnapshot(t, st, snapshotOf("snap/old", v))
			s.requireSnapshot(t, st, "snap/old", &newer)
		}
	})

	t.Run("LoadStreamAfterIt", func(t *testing.T) {
		ctx := testContext(t)
		st := s.newStore(t)
		const stream = "snap/load"
		var all []store.Commit
		for v := uint64(1); v <= 5; v++ {
			c := fullCommit(stream, v, "s")
			all = append(all, c)
			mustAppend(t, ctx, st, cloneCommit(c))
			if v == 3 {
				mustSaveSnapshot(t, st, snapshotOf(stream, v))
			}
		}
		snap, ok, err := st.LoadSnapshot(ctx, stream)
		if err != nil || !ok {
			t.Fatalf("LoadSnapshot(%s) = ok %t, %v; want the v3 snapshot", stream, ok, err)
		}
		got := mustLoad(t, ctx, st, stream, snap.Version+1)
		s.cmp.requireCommits(t, "Load(snap/load, snapshot version + 1)", got, all[3:])
	})

	t.Run("InvalidSnapshots", func(t *testing.T) {
		st := s.newStore(t)
		ctx := testContext(t)
		for _, snap := range []store.Snapshot{{Version: 1, State: []byte("x")}, {Stream: "snap/v0", State: []byte("x")}} {
			if err := st.SaveSnapshot(ctx, snap); !errors.Is(err, store.ErrInvalidCommit) {
				t.Fatalf("SaveSnapshot(%q v%d) = %v, want ErrInvalidCommit", snap.Stream, snap.Version, err)
			}
		}
		s.requireSnapshot(t, st, "snap/v0", nil)
	})

	t.Run("SurvivesReopen", func(t *testing.T) {
		st := s.newStore(t)
		snap := snapshotOf("snap/dur", 9)
		mustSaveSnapshot(t, st, snap)
		mustSaveSnapshot(t, st, snapshotOf("snap/dur", 8))
		st = s.reopen(t, st)
		s.requireSnapshot(t, st, "snap/dur", &snap)
		mustSaveSnapshot(t, st, snapshotOf("snap/dur", 2))
		s.requireSnapshot(t, st, "snap/dur", &snap)
	})
}
