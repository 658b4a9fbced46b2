package embedded

import (
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Defaults for the options.
const (
	// DefaultMaxBatch is how many queued writes one transaction takes at most.
	DefaultMaxBatch = 512
	// DefaultMaxCommitBytes caps one encoded commit (16 MiB).
	DefaultMaxCommitBytes = 16 << 20
	// DefaultLockTimeout is how long Open waits for another process to
	// release the database file.
	DefaultLockTimeout = 10 * time.Second
	// DefaultDirName is the name of the database directory inside the
	// directory passed to Open.
	DefaultDirName = "sagaflow.pebble"
	// DefaultCacheBytes is the size of Pebble's block cache (32 MiB).
	DefaultCacheBytes = 32 << 20
	// DefaultMemTableBytes is the size of one Pebble memtable (4 MiB, as
	// Pebble's own default): the writes that are served from memory until
	// flushed to a table file. Pebble keeps a flushed memtable's memory to
	// reuse for the next one, so an idle store holds about two of them
	// outside the Go heap.
	DefaultMemTableBytes = 4 << 20

	// maxBatchLimit bounds WithMaxBatch.
	maxBatchLimit = 65536
	// defaultReadLimit is used when a read is asked for limit <= 0.
	defaultReadLimit = 100
	// maxReadLimit caps the limit of List, PendingOutbox and DueTimers.
	maxReadLimit = 10000
)

// Option changes how Open sets up a Store.
type Option func(*config)

type config struct {
	maxBatch       int
	maxCommitBytes int
	lockTimeout    time.Duration
	cacheBytes     int64
	memTableBytes  int64
	dirName        string
	noSync         bool
	logger         *slog.Logger
	fs             vfs.FS // nil: the local disk; tests wrap it to hold syncs
}

func defaultConfig() config {
	return config{
		maxBatch:       DefaultMaxBatch,
		maxCommitBytes: DefaultMaxCommitBytes,
		lockTimeout:    DefaultLockTimeout,
		cacheBytes:     DefaultCacheBytes,
		memTableBytes:  DefaultMemTableBytes,
		dirName:        DefaultDirName,
		logger:         slog.New(slog.DiscardHandler),
	}
}

// WithMaxBatch sets how many queued writes (commits, dispatch marks, timer
// deletions) the writer applies in one transaction, that is with one fsync.
// It also sizes the write queue. Values below 1 mean 1; values above 65536
// mean 65536. The default is DefaultMaxBatch.
func WithMaxBatch(n int) Option {
	return func(c *config) {
		c.maxBatch = min(max(n, 1), maxBatchLimit)
	}
}

// WithMaxCommitBytes caps the encoded size of one commit; a larger commit
// fails with store.ErrInvalidCommit and message.ErrPayloadTooLarge. Values
// below 1 keep the default, DefaultMaxCommitBytes.
func WithMaxCommitBytes(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxCommitBytes = n
		}
	}
}

// WithLockTimeout sets how long Open waits for the file lock held by
// another process (or another Store in this one). Zero keeps the default,
// DefaultLockTimeout.
func WithLockTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.lockTimeout = d
		}
	}
}

// WithCacheBytes sets the size of Pebble's block cache in bytes
// (DefaultCacheBytes when n <= 0).
func WithCacheBytes(n int64) Option {
	return func(c *config) {
		if n > 0 {
			c.cacheBytes = n
		}
	}
}

// WithMemTableBytes sets the size of one Pebble memtable in bytes
// (DefaultMemTableBytes when n <= 0).
func WithMemTableBytes(n int64) Option {
	return func(c *config) {
		if n > 0 {
			c.memTableBytes = n
		}
	}
}

// WithDirName sets the database directory's name inside the directory
// passed to Open (DefaultDirName when empty).
func WithDirName(name string) Option {
	return func(c *config) {
		if name != "" {
			c.dirName = name
		}
	}
}

// WithNoSync turns off fsync: a commit returns once it is in Pebble's
// write-ahead log buffer. The last commits can then be lost in a crash of
// the process, and more in a crash of the machine. Only for tests and
// benchmarks; it breaks I1-I5 across crashes.
func WithNoSync() Option {
	return func(c *config) { c.noSync = true }
}

// WithLogger sets the logger (none by default). The store logs opening and
// closing, and recovered panics with their stack.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}
