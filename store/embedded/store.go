package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/sagaflow/sagaflow/store"
)

var _ store.Store = (*Store)(nil)

// Store is the embedded store: one Pebble database in a directory, one
// writer goroutine that group-commits, and readers that run concurrently
// with it on durable snapshots. It is safe for concurrent use. Make one
// with Open and release it with Close.
type Store struct {
	db        *pebble.DB
	lock      io.Closer // the store directory's lock file, held until Close
	dir       string
	path      string
	cfg       config
	log       *slog.Logger
	writeOpts *pebble.WriteOptions

	// current is the durable snapshot readers use (nil after Close).
	current atomic.Pointer[readView]
	// outboxSeq is the last outbox sequence number written; only the
	// writer touches it after Open.
	outboxSeq uint64
	// filters answer lookups of absent keys without Pebble (filters.go).
	filters filters
	// roundBatch is the writer's Pebble batch, reset and reused from round
	// to round so that its buffer is not grown afresh for every round
	// (Pebble's own pool of batches is emptied by every GC); nil while a
	// round holds it. Only the writer goroutine touches it.
	roundBatch *pebble.Batch

	// mu orders Close against callers: reads and queue sends hold it for
	// reading; Close takes it for writing to flip closed and close reqs.
	mu     sync.RWMutex
	closed atomic.Bool
	reqs   chan *request // bounded by cfg.maxBatch; closed by Close

	writerDone chan struct{} // closed when the writer goroutine returns
	closeOnce  sync.Once
	closeErr   error

	stats struct {
		batches, requests, commits, failedTxs atomic.Uint64
		// busyNanos is the writer's time on batches; syncNanos the part
		// of it spent committing them (the WAL write and fsync).
		busyNanos, syncNanos atomic.Int64
	}
}

// Stats counts the writer's work since Open.
type Stats struct {
	// Batches is the number of write batches committed (each one fsync).
	Batches uint64
	// Requests is the number of queued writes applied or refused by them.
	Requests uint64
	// Commits is the number of commits written.
	Commits uint64
	// FailedTransactions is the number of write batches that failed as a
	// whole.
	FailedTransactions uint64
	// Busy is the writer's time on batches, from the first request of a
	// batch to its answers: the share of a period it takes says how close
	// the store is to its write limit (at 100% every commit waits for the
	// batches before it).
	Busy time.Duration
	// SyncWait is the part of Busy spent committing batches: writing them
	// to the write-ahead log and syncing it. The rest is checking and
	// applying the requests.
	SyncWait time.Duration
	// WALBytes is the number of bytes written to the write-ahead log.
	WALBytes uint64
	// TableBytes is the number of bytes flushes and compactions have
	// written to tables (and blob files): with WALBytes, what the store
	// wrote for its commits.
	TableBytes uint64
	// CacheBytes is what the block cache holds now, and MemTableBytes what
	// the memtables (the current one and those waiting for a flush) have
	// reserved. Pebble allocates both itself: with C's malloc, outside
	// the Go heap, in a cgo build; as Go memory with CGO_ENABLED=0.
	CacheBytes, MemTableBytes uint64
	// ReadAmp is how many places a point lookup that finds nothing
	// probes now (the memtables count as one, then each sublevel of level
	// 0 and each other level with tables): the store's reads, and the
	// writer's checks for keys that are not there, cost about that many
	// table probes each.
	ReadAmp int
}

// Open opens (creating when needed) the store in directory dir, in the
// subdirectory DefaultDirName unless WithDirName says otherwise, and starts
// its writer. A store of stored format 1 (the bbolt file LegacyFileName in
// dir) is migrated first; see migrate.go. ctx bounds the wait for the
// directory's lock (together with WithLockTimeout); it does not bound the
// Store's life, which ends with Close.
func Open(ctx context.Context, dir string, opts ...Option) (*Store, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open embedded store in %s: %w", dir, err)
	}
	if dir == "" {
		return nil, errors.New("open embedded store: empty directory name")
	}
	path := filepath.Join(dir, cfg.dirName)
	if err := os.MkdirAll(path, 0o750); err != nil {
		return nil, fmt.Errorf("open embedded store: %w", err)
	}
	s := &Store{
		dir:        dir,
		path:       path,
		cfg:        cfg,
		log:        cfg.logger.With("store", "embedded", "path", path),
		reqs:       make(chan *request, cfg.maxBatch),
		writerDone: make(chan struct{}),
		writeOpts:  pebble.Sync,
	}
	if cfg.noSync {
		s.writeOpts = pebble.NoSync
	}
	if err := s.open(ctx); err != nil {
		return nil, fmt.Errorf("open embedded store %s: %w", path, err)
	}
	s.publishView()
	go s.runWriter()
	s.log.Debug("store opened", "max_batch", cfg.maxBatch)
	return s, nil
}

// open locks the directory, opens the database, migrates a format-1 file
// and checks the format.
func (s *Store) open(ctx context.Context) error {
	lock, err := lockDir(ctx, filepath.Join(s.path, lockFileName), s.cfg.lockTimeout)
	if err != nil {
		return err
	}
	db, err := pebble.Open(s.path, pebbleOptions(s.cfg, s.log))
	if err != nil {
		_ = lock.Close()
		return fmt.Errorf("open database: %w", err)
	}
	s.db, s.lock = db, lock
	if err := s.initFormat(ctx); err != nil {
		_ = db.Close()
		_ = lock.Close()
		return err
	}
	if s.filters, err = loadFilters(db); err != nil {
		_ = db.Close()
		_ = lock.Close()
		return err
	}
	return nil
}

// lockFileName is the lock file sagaflow holds in the store directory
// (Pebble holds its own, LOCK, but fails at once when it is taken).
const lockFileName = "sagaflow.lock"

// lockDir takes the lock file at name, retrying while another Store (in
// this process or another) holds it, until timeout or ctx's deadline.
func lockDir(ctx context.Context, name string, timeout time.Duration) (io.Closer, error) {
	if deadline, ok := ctx.Deadline(); ok {
		timeout = max(min(timeout, time.Until(deadline)), time.Millisecond)
	}
	stop := time.Now().Add(timeout)
	for {
		l, err := vfs.Default.Lock(name)
		if err == nil {
			return l, nil
		}
		if time.Now().After(stop) {
			return nil, fmt.Errorf("lock %s (held by another store?) for %s: %w", name, timeout, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("lock %s: %w", name, ctx.Err())
		case <-time.After(lockRetry):
		}
	}
}

// lockRetry is how often lockDir tries again.
const lockRetry = 20 * time.Millisecond

// pebbleOptions tunes Pebble for the store's load: small commits, most of
// them read again soon (heads, handled IDs), and Gets of absent keys
// (handled IDs) on every commit, which the bloom filters answer without
// reading data blocks. Blocks are not compressed: the CPU goes to the
// engine, and the disk use stays small next to what compression costs.
func pebbleOptions(cfg config, log *slog.Logger) *pebble.Options {
	o := &pebble.Options{
		Cache:              pebble.NewCache(cfg.cacheBytes),
		MemTableSize:       uint64(cfg.memTableBytes),
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{log},
		FS:                 cfg.fs,
	}
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		o.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	return o
}

// pebbleLogger sends Pebble's log lines to the store's logger: its
// informational lines (WALs found, compactions) at debug level.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

// Fatalf logs and panics: Pebble calls it on a state it cannot go on
// from. The store's recovered turns the panic into an error when it comes
// from a call; from Pebble's own goroutines it ends the process, as
// Pebble's default logger would.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := "pebble: " + fmt.Sprintf(format, args...)
	l.log.Error(msg)
	panic(msg)
}

// Dir returns the directory the store was opened in.
func (s *Store) Dir() string { return s.dir }

// Path returns the database directory's path.
func (s *Store) Path() string { return s.path }

// Stats returns the writer's counters.
func (s *Store) Stats() Stats {
	st := Stats{
		Batches:            s.stats.batches.Load(),
		Requests:           s.stats.requests.Load(),
		Commits:            s.stats.commits.Load(),
		FailedTransactions: s.stats.failedTxs.Load(),
		Busy:               time.Duration(s.stats.busyNanos.Load()),
		SyncWait:           time.Duration(s.stats.syncNanos.Load()),
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.closed.Load() {
		m := s.db.Metrics()
		st.WALBytes = m.WAL.BytesWritten
		for _, l := range m.Levels {
			st.TableBytes += l.TableBytesFlushed + l.TableBytesCompacted + l.BlobBytesFlushed + l.BlobBytesCompacted
		}
		st.CacheBytes = uint64(max(m.BlockCache.Size, 0))
		st.MemTableBytes = m.MemTable.Size
		st.ReadAmp = m.ReadAmp()
	}
	return st
}

// Ping reports whether the store can serve reads: ErrClosed after Close.
func (s *Store) Ping(ctx context.Context) error {
	err := s.view(ctx, func(b txBuckets) error { return nil })
	if err != nil {
		return fmt.Errorf("ping %s: %w", s.path, err)
	}
	return nil
}

// Close stops accepting work, lets the writer finish every write already
// queued (their callers get their answers), waits for running reads, and
// closes the database. Later calls on the Store fail with store.ErrClosed;
// calling Close again returns what the first call returned.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed.Store(true)
		close(s.reqs)
		s.mu.Unlock()
		<-s.writerDone
		if v := s.current.Swap(nil); v != nil {
			v.release()
		}
		err := s.db.Close()
		if lerr := s.lock.Close(); err == nil {
			err = lerr
		}
		if err != nil {
			s.closeErr = fmt.Errorf("close embedded store %s: %w", s.path, err)
		}
		s.log.Debug("store closed", "batches", s.stats.batches.Load(), "commits", s.stats.commits.Load())
	})
	return s.closeErr
}

// view runs fn on the last durable snapshot, unless ctx is done or the
// store is closed. A panic in fn comes back as an error.
func (s *Store) view(ctx context.Context, fn func(b txBuckets) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return store.ErrClosed
	}
	v := s.acquireView()
	if v == nil {
		return store.ErrClosed
	}
	defer v.release()
	return s.recovered("read", func() error { return fn(bucketsOf(v.snap, nil)) })
}

// recovered runs fn and turns a panic into an error (logged with its
// stack, since the error cannot carry it).
func (s *Store) recovered(what string, fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic recovered", "in", what, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("%s: panic: %v", what, p)
		}
	}()
	return fn()
}
