package embedded

import (
	"log/slog"
	"time"
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
	// DefaultInitialMmapSize is the initial memory map (256 MiB of address
	// space, not memory). While the file fits in the map, readers never
	// hold up the writer (bbolt remaps under an exclusive lock).
	DefaultInitialMmapSize = 256 << 20
	// DefaultFileName is the name of the database file inside the directory.
	DefaultFileName = "sagaflow.db"

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
	maxBatch        int
	maxCommitBytes  int
	lockTimeout     time.Duration
	initialMmapSize int
	fileName        string
	noSync          bool
	logger          *slog.Logger
}

func defaultConfig() config {
	return config{
		maxBatch:        DefaultMaxBatch,
		maxCommitBytes:  DefaultMaxCommitBytes,
		lockTimeout:     DefaultLockTimeout,
		initialMmapSize: DefaultInitialMmapSize,
		fileName:        DefaultFileName,
		logger:          slog.New(slog.DiscardHandler),
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

// WithInitialMmapSize sets the initial size of bbolt's memory map in bytes
// (DefaultInitialMmapSize when n <= 0).
func WithInitialMmapSize(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.initialMmapSize = n
		}
	}
}

// WithFileName sets the database file's name inside the directory
// (DefaultFileName when empty).
func WithFileName(name string) Option {
	return func(c *config) {
		if name != "" {
			c.fileName = name
		}
	}
}

// WithNoSync turns off fsync. Commits then survive a crash of the process
// but not of the machine. Only for tests and benchmarks; it breaks I1-I5
// across power loss.
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
