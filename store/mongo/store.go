package mongo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/sagaflow/sagaflow/store"
)

var _ store.Store = (*Store)(nil)

// Store is the MongoDB store. It is safe for concurrent use. Make one with
// Open and release it with Close.
type Store struct {
	client *mongo.Client
	db     *mongo.Database
	cfg    config
	log    *slog.Logger

	commits, handled, outbox, timers, heads, journal, snapshots *mongo.Collection

	// life ends when Close starts: reads in flight stop with ErrClosed.
	// writeLife ends when the writer has finished what was queued.
	life, writeLife       context.Context
	endLife, endWriteLife context.CancelFunc
	mu                    sync.RWMutex // orders Close against enqueuers
	closed                atomic.Bool
	reqs                  chan *appendRequest
	writerDone            chan struct{}
	closeOnce             sync.Once
	closeErr              error
	lastSweep             atomic.Int64 // unix nanos of the last journal sweep
	sweepMu               sync.Mutex
	outboxIDs             outboxIDs // for MarkDispatched (idwrites.go)
}

// Open connects to the MongoDB (or MongoDB-wire) server at uri, checks it
// answers within the retry budget, creates the indexes the store needs
// (idempotently), repairs what a crashed writer left half done (journal
// entries older than 30s), and starts the writer. The database is the one
// WithDatabase names, else the one in the URI's path, else "sagaflow".
// ctx bounds Open only.
func Open(ctx context.Context, uri string, opts ...Option) (*Store, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open mongo store: %w", err)
	}
	cs, err := connstring.ParseAndValidate(uri)
	if err != nil {
		return nil, fmt.Errorf("open mongo store: parse URI: %w", err)
	}
	if cfg.database == "" {
		cfg.database = cs.Database
	}
	if cfg.database == "" {
		cfg.database = DefaultDatabase
	}
	copts := options.Client().ApplyURI(uri)
	if cfg.monitor != nil {
		copts.SetMonitor(cfg.monitor)
	}
	if !cs.ServerSelectionTimeoutSet {
		// One attempt must not outlast the whole retry budget.
		copts.SetServerSelectionTimeout(min(cfg.retry, 30*time.Second))
	}
	client, err := mongo.Connect(copts)
	if err != nil {
		return nil, fmt.Errorf("open mongo store: %w", err)
	}
	s := &Store{
		client:     client,
		cfg:        cfg,
		log:        cfg.logger.With("store", "mongo", "database", cfg.database),
		reqs:       make(chan *appendRequest, cfg.maxBatch),
		writerDone: make(chan struct{}),
	}
	s.db = client.Database(cfg.database, options.Database().SetWriteConcern(cfg.writeConcern))
	s.commits = s.db.Collection(collCommits)
	s.handled = s.db.Collection(collHandled)
	s.outbox = s.db.Collection(collOutbox)
	s.timers = s.db.Collection(collTimers)
	s.heads = s.db.Collection(collHeads)
	s.journal = s.db.Collection(collJournal)
	s.snapshots = s.db.Collection(collSnapshots)
	s.life, s.endLife = context.WithCancel(context.Background())
	s.writeLife, s.endWriteLife = context.WithCancel(context.Background())

	fail := func(err error) (*Store, error) {
		s.endLife()
		s.endWriteLife()
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = client.Disconnect(dctx)
		return nil, fmt.Errorf("open mongo store (database %s): %w", cfg.database, err)
	}
	if err := s.Ping(ctx); err != nil {
		return fail(err)
	}
	if err := s.checkFormat(ctx); err != nil {
		return fail(err)
	}
	if err := s.createIndexes(ctx); err != nil {
		return fail(err)
	}
	if err := s.repairJournal(ctx, time.Now().Add(-cfg.journalGrace)); err != nil {
		return fail(err)
	}
	go s.runWriter()
	s.log.Debug("store opened")
	return s, nil
}

// createIndexes creates the secondary indexes. The uniqueness the store
// relies on (one commit per stream version, one marker per handled
// message) is the primary key of the natural _id, which needs no index.
func (s *Store) createIndexes(ctx context.Context) error {
	specs := []struct {
		coll *mongo.Collection
		keys bson.D
	}{
		{s.outbox, bson.D{{Key: "at", Value: 1}, {Key: "_id", Value: 1}}},
		{s.outbox, bson.D{{Key: "msg", Value: 1}}},
		{s.timers, bson.D{{Key: "due", Value: 1}, {Key: "_id", Value: 1}}},
		{s.heads, bson.D{{Key: "kind", Value: 1}, {Key: "type", Value: 1}, {Key: "status", Value: 1}, {Key: "_id", Value: 1}}},
		{s.journal, bson.D{{Key: "at", Value: 1}}},
	}
	for _, spec := range specs {
		err := s.retry(ctx, "create index on "+spec.coll.Name(), func(ctx context.Context) error {
			_, err := spec.coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: spec.keys})
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Database returns the name of the store's database.
func (s *Store) Database() string { return s.cfg.database }

// Ping checks that the server answers (within the retry budget).
func (s *Store) Ping(ctx context.Context) error {
	return s.read(ctx, "ping", func(ctx context.Context) error {
		return s.retry(ctx, "ping", func(ctx context.Context) error {
			return s.client.Ping(ctx, nil)
		})
	})
}

// Close stops taking work, lets the writer finish the appends already
// queued, stops reads in flight (they fail with store.ErrClosed) and
// disconnects. Later calls fail with store.ErrClosed; calling Close again
// returns what the first call returned.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.endLife()
		s.mu.Lock()
		close(s.reqs)
		s.mu.Unlock()
		<-s.writerDone
		s.endWriteLife()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.client.Disconnect(ctx); err != nil {
			s.closeErr = fmt.Errorf("close mongo store (database %s): %w", s.cfg.database, err)
		}
		s.log.Debug("store closed")
	})
	return s.closeErr
}

// read runs fn as the operation op of a caller: not at all when ctx is
// done or the store closed, and with a context that also ends when Close
// starts. fn retries its own database calls (see retry).
func (s *Store) read(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.life, func() { cancel(store.ErrClosed) })
	defer func() {
		stop()
		cancel(nil)
	}()
	if err := fn(ctx); err != nil {
		if errors.Is(context.Cause(ctx), store.ErrClosed) && !errors.Is(err, store.ErrClosed) {
			return fmt.Errorf("%s: %w: %w", op, store.ErrClosed, err)
		}
		return err
	}
	return nil
}

// retry runs fn until it succeeds, fails with an error that is not worth
// retrying, ctx ends, or the retry budget is spent. Only network, timeout
// and server-selection errors are retried, with exponential backoff; a
// duplicate key never is. After the budget the error wraps
// store.ErrUnavailable, names op and carries the last cause.
func (s *Store) retry(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	start := time.Now()
	attempts := 0
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempts++
		actx, cancel := context.WithTimeout(ctx, s.cfg.retry)
		defer cancel()
		err := fn(actx)
		switch {
		case err == nil:
			return struct{}{}, nil
		case ctx.Err() != nil, !retryable(err):
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	},
		backoff.WithBackOff(&backoff.ExponentialBackOff{
			InitialInterval:     50 * time.Millisecond,
			RandomizationFactor: 0.5,
			Multiplier:          2,
			MaxInterval:         2 * time.Second,
		}),
		backoff.WithMaxElapsedTime(s.cfg.retry),
		backoff.WithNotify(func(err error, next time.Duration) {
			s.log.Warn("store operation failed, retrying", "op", op, "attempt", attempts, "retry_in", next, "err", err)
		}),
	)
	if err == nil {
		return nil
	}
	if cause := context.Cause(ctx); cause != nil {
		if errors.Is(cause, store.ErrClosed) || s.closed.Load() {
			return fmt.Errorf("%s: %w", op, store.ErrClosed)
		}
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	if s.closed.Load() && errors.Is(err, mongo.ErrClientDisconnected) {
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	if retryable(err) {
		return fmt.Errorf("%s: %w: %d attempts in %s, last error: %w",
			op, store.ErrUnavailable, attempts, time.Since(start).Round(time.Millisecond), err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// retryable reports whether err is a network, timeout or server-selection
// error, which a retry may cure. Duplicate keys never are.
func retryable(err error) bool {
	if err == nil || mongo.IsDuplicateKeyError(err) {
		return false
	}
	var sse topology.ServerSelectionError
	var le mongo.LabeledError
	return mongo.IsNetworkError(err) || mongo.IsTimeout(err) ||
		errors.As(err, &sse) ||
		(errors.As(err, &le) && le.HasErrorLabel("RetryableWriteError"))
}

// newToken returns a random token (for append requests and journal
// entries).
func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// readLimit maps a requested limit to the one a read uses.
func readLimit(n int) int {
	if n <= 0 {
		return defaultReadLimit
	}
	return min(n, maxReadLimit)
}

// DropDatabase drops database name on the server at uri (for tests and
// tools that made a throwaway database).
func DropDatabase(ctx context.Context, uri, name string) error {
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	defer func() { _ = client.Disconnect(context.WithoutCancel(ctx)) }()
	if err := client.Database(name).Drop(ctx); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}
