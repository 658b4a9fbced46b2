package inmem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// Defaults of the options.
const (
	// DefaultDeliveryLimit is how many deliveries a message gets, when
	// each is requeued, before it is dead-lettered.
	DefaultDeliveryLimit = 20
	// DefaultDeadLetterCapacity is how many dead letters are kept.
	DefaultDeadLetterCapacity = 10_000
)

// Option configures a Transport.
type Option func(*config)

type config struct {
	partitions   int
	limit        int
	maxSize      int
	deadCapacity int
	logger       *slog.Logger
}

// WithPartitions sets the number of partitions per queue (default
// transport.DefaultPartitions; values below 1 mean 1). Every process that
// shares keys must use the same number.
func WithPartitions(n int) Option { return func(c *config) { c.partitions = n } }

// WithDeliveryLimit sets how many deliveries a message gets when each one
// is requeued: the Requeue of delivery number n dead-letters it with the
// reason given (default DefaultDeliveryLimit; values below 1 mean 1).
func WithDeliveryLimit(n int) Option { return func(c *config) { c.limit = n } }

// WithMaxMessageSize sets the largest encoded envelope, in bytes, that
// Publish accepts (default and values below 1: message.DefaultMaxSize).
func WithMaxMessageSize(bytes int) Option { return func(c *config) { c.maxSize = bytes } }

// WithDeadLetterCapacity bounds the dead-letter list (default
// DefaultDeadLetterCapacity; values below 1 mean 1). When it is full the
// oldest letter is dropped; see Transport.DroppedDeadLetters.
func WithDeadLetterCapacity(n int) Option { return func(c *config) { c.deadCapacity = n } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// Transport is the in-process transport.Transport. It is safe for
// concurrent use. Its zero value is not usable; call New.
type Transport struct {
	cfg  config
	done chan struct{} // closed by Close

	mu     sync.RWMutex // guards closed, queues, bindings
	closed bool
	queues map[string]*queue
	// bindings maps an event type to the queues that subscribe to it.
	bindings map[string][]*queue

	consumers sync.WaitGroup // running Consume calls

	deadMu sync.Mutex
	dead   deadLetters
}

var _ transport.Transport = (*Transport)(nil)

// New returns an in-process transport with no queues.
func New(opts ...Option) *Transport {
	cfg := config{
		partitions:   transport.DefaultPartitions,
		limit:        DefaultDeliveryLimit,
		maxSize:      message.DefaultMaxSize,
		deadCapacity: DefaultDeadLetterCapacity,
		logger:       slog.Default(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.partitions = max(cfg.partitions, 1)
	cfg.limit = max(cfg.limit, 1)
	cfg.deadCapacity = max(cfg.deadCapacity, 1)
	if cfg.maxSize < 1 {
		cfg.maxSize = message.DefaultMaxSize
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	return &Transport{
		cfg:      cfg,
		done:     make(chan struct{}),
		queues:   make(map[string]*queue),
		bindings: make(map[string][]*queue),
		dead:     deadLetters{size: cfg.deadCapacity},
	}
}

// Declare makes queue q exist with its partitions and binds it to the event
// types in q.Events. Declaring again adds bindings and changes nothing
// else: messages already queued stay, a binding is never doubled.
func (t *Transport) Declare(_ context.Context, q transport.Queue) error {
	if q.Name == "" {
		return errors.New("inmem: declare: queue name is empty")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("inmem: declare %s: %w", q.Name, transport.ErrClosed)
	}
	qu, ok := t.queues[q.Name]
	if !ok {
		qu = newQueue(t, q.Name, t.cfg.partitions)
		t.queues[q.Name] = qu
	}
	for _, ev := range q.Events {
		if !slices.Contains(t.bindings[ev], qu) {
			t.bindings[ev] = append(t.bindings[ev], qu)
		}
	}
	return nil
}

// Publish validates e, encodes it (which copies it and enforces the size
// limit) and appends it to the partition of its key on its destination's
// queue (commands and replies) or on every queue bound to its type
// (events). An event no queue is bound to is dropped without error, as a
// topic exchange does. When Publish returns nil the message is queued.
func (t *Transport) Publish(ctx context.Context, e message.Envelope) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("inmem: publish %s: %w", e.ID, err)
	}
	if err := e.Validate(); err != nil {
		return err
	}
	data, err := message.MarshalEnvelope(e, t.cfg.maxSize)
	if err != nil {
		return err
	}
	p := transport.Partition(e.Key, t.cfg.partitions)
	// Pushing under the read lock means no Publish succeeds after Close.
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return fmt.Errorf("inmem: publish %s: %w", e.ID, transport.ErrClosed)
	}
	if e.Kind == message.KindEvent {
		for _, q := range t.bindings[e.Type] {
			q.parts[p].push(&item{data: data, id: e.ID})
		}
		return nil
	}
	q, ok := t.queues[e.Destination]
	if !ok {
		return fmt.Errorf("inmem: %s %s to %q: %w (declare the queue first)", e.Kind, e.ID, e.Destination, transport.ErrUnroutable)
	}
	q.parts[p].push(&item{data: data, id: e.ID})
	return nil
}

// Consume delivers queue's messages to h until ctx is done or the
// transport closes; see transport.Transport. Each partition is delivered
// in order by its own goroutine, which calls h and keeps at most prefetch
// of its deliveries unsettled. Only one Consume per queue is active: a
// later one stands by until the active one returns, then gets, first, the
// deliveries that one left unsettled. Consume waits for its goroutines
// before it returns: nil when ctx ended, transport.ErrClosed when the
// transport closed.
func (t *Transport) Consume(ctx context.Context, queue string, prefetch int, h transport.Handler) error {
	if prefetch < 1 {
		return fmt.Errorf("inmem: consume %s: prefetch %d must be at least 1", queue, prefetch)
	}
	t.mu.RLock()
	if t.closed {
		t.mu.RUnlock()
		return fmt.Errorf("inmem: consume %s: %w", queue, transport.ErrClosed)
	}
	q, ok := t.queues[queue]
	if ok {
		t.consumers.Add(1) // before Close can Wait: it sets closed under the write lock first
	}
	t.mu.RUnlock()
	if !ok {
		return fmt.Errorf("inmem: consume %s: %w (declare the queue first)", queue, transport.ErrUnroutable)
	}
	defer t.consumers.Done()
	if ctx.Err() != nil {
		return nil
	}
	select {
	case q.slot <- struct{}{}:
	case <-ctx.Done():
		return nil
	case <-t.done:
		return fmt.Errorf("inmem: consume %s: %w", queue, transport.ErrClosed)
	}
	defer func() { <-q.slot }()
	if err := q.serve(ctx, prefetch, h); err != nil {
		return fmt.Errorf("inmem: consume %s: %w", queue, err)
	}
	return nil
}

// DeadLetters returns up to limit dead letters (all of them when limit <=
// 0), oldest first. The list holds at most the dead-letter capacity.
func (t *Transport) DeadLetters(_ context.Context, limit int) ([]transport.DeadLetter, error) {
	t.deadMu.Lock()
	defer t.deadMu.Unlock()
	return t.dead.oldest(limit), nil
}

// DroppedDeadLetters counts the dead letters dropped, oldest first, because
// the list was at its capacity.
func (t *Transport) DroppedDeadLetters() int {
	t.deadMu.Lock()
	defer t.deadMu.Unlock()
	return t.dead.dropped
}

// Close stops every consumer and waits until each Consume has returned;
// afterwards Declare, Publish and Consume fail with transport.ErrClosed.
// Unsettled deliveries can no longer be settled. Dead letters stay
// readable. Closing again does nothing.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	t.mu.Unlock()
	t.consumers.Wait()
	return nil
}

// deadLetter records a dead letter of it, taken from queue after attempts
// deliveries, dropping the oldest letter when the list is full.
func (t *Transport) deadLetter(queue string, it *item, attempts int, reason error) {
	env, err := message.UnmarshalEnvelope(it.data, t.cfg.maxSize)
	if err != nil {
		env = message.Envelope{ID: it.id}
	}
	dl := transport.DeadLetter{Message: env, Queue: queue, Reason: reasonText(reason), Attempts: attempts}
	t.deadMu.Lock()
	dl.At = time.Now() // under the lock: the list is in At order
	dropped := t.dead.add(dl)
	total := t.dead.dropped
	t.deadMu.Unlock()
	// Log the 1st, 2nd, 4th, 8th... drop: enough to notice, never a flood.
	if dropped && total&(total-1) == 0 {
		t.cfg.logger.Warn("inmem: dead-letter list full; dropped the oldest",
			"capacity", t.cfg.deadCapacity, "dropped_total", total)
	}
}

func reasonText(err error) string {
	if err == nil {
		return "no reason given"
	}
	return err.Error()
}
