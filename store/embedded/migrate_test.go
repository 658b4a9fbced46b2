package embedded

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/sagaflow/sagaflow/internal/recordjson"
	"github.com/sagaflow/sagaflow/store"
)

// legacyAt is the commit time of the format-1 file's commit and outbox
// entry.
var legacyAt = time.Date(2030, 1, 1, 0, 0, 1, 0, time.UTC)

// writeLegacy writes a bbolt file of stored format 1 into dir, with the
// layout that format used: stream s at v1 (handled h1), one pending outbox
// entry at outbox sequence 1, and timer t1.
func writeLegacy(t *testing.T, dir, format string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, LegacyFileName), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := testCommit("s", 1, "h1")
	c.At = legacyAt
	err = db.Update(func(tx *bolt.Tx) error {
		bk := map[string]*bolt.Bucket{}
		for _, name := range []string{"commits", "heads", "handled", "outbox", "outbox_index", "timers", "timer_index", "snapshots", "info"} {
			b, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			bk[name] = b
		}
		put := func(bucket string, k, v []byte) {
			if err == nil {
				err = bk[bucket].Put(k, v)
			}
		}
		cv, _ := recordjson.Marshal(c)
		put("commits", commitKey("s", 1), cv)
		put("heads", []byte("s"), headValue(1, nil))
		put("handled", handledKey("s", "h1"), binary.BigEndian.AppendUint64(nil, 1))
		ok := outboxKey(sortableNanos(legacyAt), 1)
		ov, _ := recordjson.Marshal(store.OutboxEntry{ID: c.Outbox[0].ID, Stream: "s", Version: 1, Message: c.Outbox[0], At: legacyAt})
		put("outbox", ok, ov)
		put("outbox_index", []byte(c.Outbox[0].ID), ok)
		due := legacyAt.Add(time.Hour)
		tv, _ := recordjson.Marshal(store.Timer{ID: "t1", Stream: "s", DueAt: due})
		put("timers", timerKey(due, "t1"), tv)
		put("timer_index", []byte("t1"), timerKey(due, "t1"))
		put("info", formatKey, []byte(format))
		if err != nil {
			return err
		}
		return bk["outbox"].SetSequence(1)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenMigratesAFormat1File(t *testing.T) {
	dir := t.TempDir()
	writeLegacy(t, dir, "1")
	s, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	checkLegacyData(t, s)
	if _, err := os.Stat(filepath.Join(dir, LegacyFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the format-1 file is still in Open's way: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, LegacyFileName+".migrated")); err != nil {
		t.Errorf("the format-1 file was not kept as .migrated: %v", err)
	}
	// A new outbox entry at the same commit time must get a later
	// sequence number than the migrated one, or it would overwrite it.
	c := testCommit("s", 2)
	c.At = legacyAt
	if err := s.Append(t.Context(), c); err != nil {
		t.Fatalf("Append after the migration: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(t.Context(), dir)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	pending, err := s.PendingOutbox(t.Context(), legacyAt, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 2 || pending[0].Version != 1 || pending[1].Version != 2 {
		t.Errorf("pending outbox after the migration and a new commit: %+v; want v1's entry, then v2's", pending)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A crash after the marker but before the rename leaves the old file
	// in place: Open must move it aside, not copy it over the newer store.
	if err := os.Rename(filepath.Join(dir, LegacyFileName+".migrated"), filepath.Join(dir, LegacyFileName)); err != nil {
		t.Fatal(err)
	}
	s = openIn(t, dir)
	defer s.Close()
	if v := loadVersions(t, s, "s"); len(v) != 2 {
		t.Errorf("after reopening beside the old file, stream s has commits %v; want v1 and v2", v)
	}
	if _, err := os.Stat(filepath.Join(dir, LegacyFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old file is still in Open's way: %v", err)
	}
}

// checkLegacyData checks that s holds what writeLegacy wrote.
func checkLegacyData(t *testing.T, s *Store) {
	t.Helper()
	ctx := t.Context()
	if v := loadVersions(t, s, "s"); len(v) != 1 {
		t.Errorf("stream s has commits %v, want one", v)
	}
	if info, err := s.Info(ctx, "s"); err != nil || info.Version != 1 {
		t.Errorf("Info(s) = %+v, %v; want v1", info, err)
	}
	if v, ok, err := s.Handled(ctx, "s", "h1"); err != nil || !ok || v != 1 {
		t.Errorf("Handled(s, h1) = %d, %v, %v; want v1", v, ok, err)
	}
	if pending, err := s.PendingOutbox(ctx, legacyAt, 10); err != nil || len(pending) != 1 {
		t.Errorf("pending outbox = %+v, %v; want the one entry", pending, err)
	}
	if due, err := s.DueTimers(ctx, legacyAt.Add(2*time.Hour), 10); err != nil || len(due) != 1 || due[0].ID != "t1" {
		t.Errorf("due timers = %+v, %v; want t1", due, err)
	}
}

func TestOpenRedoesAMigrationThatDidNotFinish(t *testing.T) {
	dir := t.TempDir()
	writeLegacy(t, dir, "1")
	// What a crash part way through a copy leaves: keys, no format marker.
	setRaw(t, dir, append([]byte{prefixHeads}, "half-copied"...), headValue(9, nil))
	s, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	checkLegacyData(t, s)
	if _, err := s.Info(t.Context(), "half-copied"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a key of the unfinished copy survived: %v", err)
	}
}

func TestOpenRefusesALegacyFileOfAnotherFormat(t *testing.T) {
	dir := t.TempDir()
	writeLegacy(t, dir, "999")
	wantRefused(t, dir, `"999"`, `"`+FormatVersion+`"`, `"`+legacyFormat+`"`)
	if _, err := os.Stat(filepath.Join(dir, LegacyFileName)); err != nil {
		t.Errorf("the refused file was moved: %v", err)
	}
}

func TestOpenRefusesAStoreWithDataAndNoFormat(t *testing.T) {
	dir := t.TempDir()
	setRaw(t, dir, []byte("foreign"), []byte("x"))
	wantRefused(t, dir, "no format marker")
}

// setRaw sets key to value in the Pebble database of the store in dir,
// past the store's own code.
func setRaw(t *testing.T, dir string, key, value []byte) {
	t.Helper()
	db, err := pebble.Open(filepath.Join(dir, DefaultDirName), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(key, value, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// wantRefused requires Open of dir to fail with store.ErrUnsupportedFormat
// and an error naming each of names.
func wantRefused(t *testing.T, dir string, names ...string) {
	t.Helper()
	s, err := Open(t.Context(), dir)
	if err == nil {
		_ = s.Close()
		t.Fatalf("Open of %s accepted a store of a format it does not read", dir)
	}
	if !errors.Is(err, store.ErrUnsupportedFormat) {
		t.Errorf("Open: %v; want store.ErrUnsupportedFormat", err)
	}
	for _, name := range names {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("Open: %v; want it to name %s", err, name)
		}
	}
}

func TestOpenWaitsForTheLockAndGivesUp(t *testing.T) {
	dir := t.TempDir()
	s := openIn(t, dir)
	start := time.Now()
	s2, err := Open(t.Context(), dir, WithLockTimeout(100*time.Millisecond))
	if err == nil {
		_ = s2.Close()
		t.Fatal("a second Store opened the same directory")
	}
	if waited := time.Since(start); waited < 100*time.Millisecond {
		t.Errorf("Open gave up after %s, before its lock timeout", waited)
	}
	done := make(chan error, 1)
	go func() {
		s3, err := Open(t.Context(), dir, WithLockTimeout(5*time.Second))
		if err == nil {
			err = s3.Close()
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Open waiting for the lock: %v", err)
	}
}

func openIn(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestReadViewClosesItsSnapshotWithTheLastReader(t *testing.T) {
	s := openTest(t)
	v := s.acquireView()
	if v == nil {
		t.Fatal("no view on an open store")
	}
	s.publishView() // the writer moves on; v stays readable for its reader
	if v.acquire() != true {
		t.Fatal("a view still in use could not be acquired")
	}
	v.release()
	if _, _, err := v.snap.Get([]byte{prefixInfo}); err != nil && !errors.Is(err, pebble.ErrNotFound) {
		t.Fatalf("read on a view in use: %v", err)
	}
	v.release() // the last reader
	if v.acquire() {
		t.Fatal("a released view was acquired again")
	}
	if w := s.acquireView(); w == nil || w == v {
		t.Fatalf("acquireView returned %p, want the newer view", w)
	} else {
		w.release()
	}
}
