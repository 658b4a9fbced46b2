package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sagaflow/sagaflow/store"
)

var _ store.Store = (*Store)(nil)

// Store is the embedded store: one bbolt file, one writer goroutine that
// group-commits, and readers that run concurrently with it. It is safe for
// concurrent use. Make one with Open and release it with Close.
type Store struct {
	db   *bolt.DB
	dir  string
	path string
	cfg  config
	log  *slog.Logger

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
		// busyNanos is the writer's time in write transactions.
		busyNanos atomic.Int64
	}
}

// Stats counts the writer's work since Open.
type Stats struct {
	// Batches is the number of write transactions (each one fsync).
	Batches uint64
	// Requests is the number of queued writes applied or refused by them.
	Requests uint64
	// Commits is the number of commits written.
	Commits uint64
	// FailedTransactions is the number of write transactions that failed
	// as a whole.
	FailedTransactions uint64
	// Busy is the writer's time in write transactions, from the first
	// request of a batch to its answers: the share of a period it takes
	// says how close the store is to its write limit (at 100% every
	// commit waits for the batches before it).
	Busy time.Duration
	// PageWrite is the part of Busy spent writing pages to the file and
	// syncing it (bbolt's write time); the rest is applying the requests
	// and bbolt's page copy-on-write.
	PageWrite time.Duration
	// PagesWritten is the number of file pages the transactions wrote.
	PagesWritten int64
}

// Open opens (creating when needed) the store in directory dir, in the file
// DefaultFileName unless WithFileName says otherwise, and starts its writer.
// ctx bounds the wait for the file lock (together with WithLockTimeout); it
// does not bound the Store's life, which ends with Close.
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
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open embedded store: %w", err)
	}
	path := filepath.Join(dir, cfg.fileName)
	lockTimeout := cfg.lockTimeout
	if deadline, ok := ctx.Deadline(); ok {
		lockTimeout = max(min(lockTimeout, time.Until(deadline)), time.Millisecond)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         lockTimeout,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: cfg.initialMmapSize,
		NoSync:          cfg.noSync,
	})
	if err != nil {
		return nil, fmt.Errorf("open embedded store %s: %w", path, err)
	}
	if err := initBuckets(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open embedded store %s: %w", path, err)
	}
	s := &Store{
		db:         db,
		dir:        dir,
		path:       path,
		cfg:        cfg,
		log:        cfg.logger.With("store", "embedded", "path", path),
		reqs:       make(chan *request, cfg.maxBatch),
		writerDone: make(chan struct{}),
	}
	go s.runWriter()
	s.log.Debug("store opened", "max_batch", cfg.maxBatch)
	return s, nil
}

// initBuckets creates the buckets and checks the file's format version.
func initBuckets(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		info := tx.Bucket(bucketInfo)
		switch v := info.Get(formatKey); {
		case v == nil:
			return info.Put(formatKey, []byte(FormatVersion))
		case !bytes.Equal(v, []byte(FormatVersion)):
			return fmt.Errorf("%w: the file is of stored format %q, this release reads format %q", store.ErrUnsupportedFormat, v, FormatVersion)
		}
		return nil
	})
}

// Dir returns the directory the store was opened in.
func (s *Store) Dir() string { return s.dir }

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Stats returns the writer's counters.
func (s *Store) Stats() Stats {
	tx := s.db.Stats().TxStats
	return Stats{
		Batches:            s.stats.batches.Load(),
		Requests:           s.stats.requests.Load(),
		Commits:            s.stats.commits.Load(),
		FailedTransactions: s.stats.failedTxs.Load(),
		Busy:               time.Duration(s.stats.busyNanos.Load()),
		PageWrite:          tx.GetWriteTime(),
		PagesWritten:       tx.GetWrite(),
	}
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
// closes the file. Later calls on the Store fail with store.ErrClosed;
// calling Close again returns what the first call returned.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed.Store(true)
		close(s.reqs)
		s.mu.Unlock()
		<-s.writerDone
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close embedded store %s: %w", s.path, err)
		}
		s.log.Debug("store closed", "batches", s.stats.batches.Load(), "commits", s.stats.commits.Load())
	})
	return s.closeErr
}

// view runs fn in a read-only transaction, unless ctx is done or the store
// is closed. A panic in fn comes back as an error.
func (s *Store) view(ctx context.Context, fn func(b txBuckets) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return store.ErrClosed
	}
	return s.recovered("read transaction", func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			b, err := bucketsOf(tx)
			if err != nil {
				return err
			}
			return fn(b)
		})
	})
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

// txBuckets are the buckets of one transaction.
type txBuckets struct {
	commits, heads, handled, outbox, outboxIndex, timers, timerIndex, snapshots *bolt.Bucket
}

func bucketsOf(tx *bolt.Tx) (txBuckets, error) {
	b := txBuckets{
		commits:     tx.Bucket(bucketCommits),
		heads:       tx.Bucket(bucketHeads),
		handled:     tx.Bucket(bucketHandled),
		outbox:      tx.Bucket(bucketOutbox),
		outboxIndex: tx.Bucket(bucketOutboxIndex),
		timers:      tx.Bucket(bucketTimers),
		timerIndex:  tx.Bucket(bucketTimerIndex),
		snapshots:   tx.Bucket(bucketSnapshots),
	}
	if b.commits == nil || b.heads == nil || b.handled == nil || b.outbox == nil ||
		b.outboxIndex == nil || b.timers == nil || b.timerIndex == nil || b.snapshots == nil {
		return b, errors.New("database file lacks sagaflow's buckets")
	}
	return b, nil
}
