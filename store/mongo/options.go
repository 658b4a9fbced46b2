package mongo

import (
	"log/slog"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// Defaults for the options.
const (
	// DefaultDatabase is the database used when neither WithDatabase nor the
	// URI's path names one.
	DefaultDatabase = "sagaflow"
	// DefaultRetry is the retry budget: how long an operation is retried
	// after network, timeout and server-selection errors before it fails
	// with store.ErrUnavailable.
	DefaultRetry = 10 * time.Second
	// DefaultMaxBatch is how many queued appends the writer takes into one
	// group commit at most.
	DefaultMaxBatch = 256

	// journalGrace is how old a journal entry must be before a running
	// store repairs it (see doc.go); younger ones may belong to a writer
	// that is still working.
	journalGrace = 30 * time.Second
	// sweepEvery limits how often PendingOutbox and DueTimers look for
	// journal entries to repair.
	sweepEvery = 10 * time.Second
	// defaultReadLimit is used when a read is asked for limit <= 0.
	defaultReadLimit = 100
	// maxReadLimit caps the limit of List, PendingOutbox and DueTimers.
	maxReadLimit = 10000
	// maxDocBytes caps an encoded commit or snapshot, below MongoDB's
	// 16 MiB document limit.
	maxDocBytes = 15 << 20
	// readConcurrency bounds the parallel _id lookups of one call.
	readConcurrency = 16
	// maxIDsPerDelete bounds the IDs of one deleteMany.
	maxIDsPerDelete = 1000
	// doneCacheSize bounds the writer's memory of streams whose last commit
	// it finished (see doc.go).
	doneCacheSize = 100_000
)

// Option changes how Open sets up a Store.
type Option func(*config)

type config struct {
	database     string
	writeConcern *writeconcern.WriteConcern
	retry        time.Duration
	maxBatch     int
	logger       *slog.Logger
	journalGrace time.Duration
	monitor      *event.CommandMonitor
}

func defaultConfig() config {
	return config{
		writeConcern: writeconcern.Majority(),
		retry:        DefaultRetry,
		maxBatch:     DefaultMaxBatch,
		logger:       slog.New(slog.DiscardHandler),
		journalGrace: journalGrace,
	}
}

// WithDatabase sets the database (default: the database in the URI's
// path, else DefaultDatabase).
func WithDatabase(name string) Option {
	return func(c *config) {
		if name != "" {
			c.database = name
		}
	}
}

// WithWriteConcern sets the write concern of every write (default:
// majority). A weaker one trades durability across a failover for latency.
func WithWriteConcern(wc *writeconcern.WriteConcern) Option {
	return func(c *config) {
		if wc != nil {
			c.writeConcern = wc
		}
	}
}

// WithRetry sets the retry budget (default DefaultRetry): how long an
// operation is retried, with exponential backoff, after network, timeout
// and server-selection errors. After it the operation fails with an error
// wrapping store.ErrUnavailable. Zero or less keeps the default.
func WithRetry(maxElapsed time.Duration) Option {
	return func(c *config) {
		if maxElapsed > 0 {
			c.retry = maxElapsed
		}
	}
}

// WithMaxBatch sets how many queued appends one group commit takes at most
// (default DefaultMaxBatch; values below 1 mean 1).
func WithMaxBatch(n int) Option {
	return func(c *config) { c.maxBatch = max(n, 1) }
}

// WithLogger sets the logger (none by default). The store logs retries,
// repairs and derived writes that failed after their commit was durable.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithCommandMonitor sets a driver command monitor on the store's client,
// which sees every command the store sends (to trace or count them; the
// tests use it to check that hot writes name documents by _id alone).
// Nil sets none.
func WithCommandMonitor(m *event.CommandMonitor) Option {
	return func(c *config) { c.monitor = m }
}
