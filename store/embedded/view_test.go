package embedded

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// heldSyncFS is the local disk, except that syncs of write-ahead-log files
// wait while held.
type heldSyncFS struct {
	vfs.FS
	mu      sync.Mutex
	held    chan struct{} // nil: syncs go through; else closed to let them
	waiting chan struct{} // gets a value when a held sync starts waiting
}

func (f *heldSyncFS) hold() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held = make(chan struct{})
}

func (f *heldSyncFS) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.held)
	f.held = nil
}

func (f *heldSyncFS) gate() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held
}

func (f *heldSyncFS) wrap(name string, file vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return file, err
	}
	return &heldSyncFile{File: file, fs: f}, nil
}

func (f *heldSyncFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	file, err := f.FS.Create(name, c)
	return f.wrap(name, file, err)
}

func (f *heldSyncFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	file, err := f.FS.ReuseForWrite(oldname, newname, c)
	return f.wrap(newname, file, err)
}

type heldSyncFile struct {
	vfs.File
	fs *heldSyncFS
}

// wait holds a sync while the file system says so.
func (f *heldSyncFile) wait() {
	if g := f.fs.gate(); g != nil {
		select {
		case f.fs.waiting <- struct{}{}:
		default:
		}
		<-g
	}
}

func (f *heldSyncFile) Sync() error { f.wait(); return f.File.Sync() }

func (f *heldSyncFile) SyncData() error { f.wait(); return f.File.SyncData() }

func (f *heldSyncFile) SyncTo(length int64) (bool, error) {
	f.wait()
	return f.File.SyncTo(length)
}

// TestReadersNeverSeeAWriteBeforeItIsDurable holds the write-ahead log's
// sync of a commit and reads meanwhile: Pebble has already made the batch
// visible, but a reader must not see it (the relay would publish an
// outbox message whose commit a crash could still take back, I4).
func TestReadersNeverSeeAWriteBeforeItIsDurable(t *testing.T) {
	fs := &heldSyncFS{FS: vfs.Default, waiting: make(chan struct{}, 1)}
	s, err := Open(t.Context(), t.TempDir(), func(c *config) { c.fs = fs })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	fs.hold()
	appended := make(chan error, 1)
	c := testCommit("s", 1, "h1")
	go func() { appended <- s.Append(ctx, c) }()
	select {
	case <-fs.waiting:
	case err := <-appended:
		t.Fatalf("Append returned %v before its sync", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the commit's sync never started")
	}
	if v := loadVersions(t, s, "s"); len(v) != 0 {
		t.Errorf("Load saw %v while the commit's sync was held", v)
	}
	if _, ok, err := s.Handled(ctx, "s", "h1"); err != nil || ok {
		t.Errorf("Handled saw the commit while its sync was held (%v, %v)", ok, err)
	}
	if pending, err := s.PendingOutbox(ctx, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), 10); err != nil || len(pending) != 0 {
		t.Errorf("PendingOutbox saw %v while the commit's sync was held (%v)", pending, err)
	}
	fs.release()
	if err := <-appended; err != nil {
		t.Fatalf("Append: %v", err)
	}
	if v := loadVersions(t, s, "s"); len(v) != 1 {
		t.Errorf("Load after the sync: %v, want the commit", v)
	}
}
