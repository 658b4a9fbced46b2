package embedded

import (
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// Pebble makes a batch visible to readers when it is in the memtable,
// before its WAL sync ends. Readers must not see a write that a crash
// could still take back (the relay would publish an outbox message whose
// commit is then lost), so they read a snapshot the writer takes after
// each durable batch: the state of the last finished group commit.

// readView is one durable snapshot, shared by the readers that use it.
// refs counts them plus one while the view is the current one; the last
// release closes the snapshot.
type readView struct {
	snap *pebble.Snapshot
	refs atomic.Int64
}

// acquire takes a reference, unless the view was already released for
// good.
func (v *readView) acquire() bool {
	for {
		n := v.refs.Load()
		if n <= 0 {
			return false
		}
		if v.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference and closes the snapshot with the last one.
func (v *readView) release() {
	if v.refs.Add(-1) == 0 {
		_ = v.snap.Close()
	}
}

// publishView makes the database's current state the one readers see.
// Only the writer calls it, after a batch is durable, and Open before the
// writer starts.
func (s *Store) publishView() {
	v := &readView{snap: s.db.NewSnapshot()}
	v.refs.Store(1)
	if old := s.current.Swap(v); old != nil {
		old.release()
	}
}

// acquireView returns the current view with a reference taken (nil after
// Close). A failed acquire means the writer has just published a newer
// view, so the loop ends at the next turn.
func (s *Store) acquireView() *readView {
	for {
		v := s.current.Load()
		if v == nil || v.acquire() {
			return v
		}
	}
}
