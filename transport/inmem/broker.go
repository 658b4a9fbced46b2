package inmem

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
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

// WithPartitions sets the partitions per queue (default transport.DefaultPartitions).
func WithPartitions(n int) Option { return func(c *config) { c.partitions = n } }

// WithDeliveryLimit sets how many deliveries a message gets before a
// requeue dead-letters it (default 20).
func WithDeliveryLimit(n int) Option { return func(c *config) { c.limit = n } }

// WithMaxMessageSize sets the largest encoded envelope accepted (default
// message.DefaultMaxSize).
func WithMaxMessageSize(bytes int) Option { return func(c *config) { c.maxSize = bytes } }

// WithDeadLetterCapacity bounds the dead-letter list (default 10,000);
// the oldest are dropped, counted and logged.
func WithDeadLetterCapacity(n int) Option { return func(c *config) { c.deadCapacity = n } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// Transport is the in-process transport. It is safe for concurrent use.
type Transport struct {
	cfg    config
	mu     sync.Mutex
	closed bool
	done   chan struct{}
	queues map[string]*queue
	// bindings maps an event type to the queues that subscribe to it.
	bindings map[string][]*queue
	dead     []transport.DeadLetter
	dropped  int
	wg       sync.WaitGroup
}

var _ transport.Transport = (*Transport)(nil)

// New returns an empty in-process transport.
func New(opts ...Option) *Transport {
	cfg := config{partitions: transport.DefaultPartitions, limit: 20, maxSize: message.DefaultMaxSize, deadCapacity: 10_000, logger: slog.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.partitions < 1 {
		cfg.partitions = 1
	}
	if cfg.limit < 1 {
		cfg.limit = 1
	}
	if cfg.deadCapacity < 1 {
		cfg.deadCapacity = 1
	}
	return &Transport{cfg: cfg, done: make(chan struct{}), queues: make(map[string]*queue), bindings: make(map[string][]*queue)}
}

// Declare makes queue q exist with its partitions and binds it to q.Events.
func (t *Transport) Declare(_ context.Context, q transport.Queue) error {
	if q.Name == "" {
		return errors.New("inmem: declare: queue name is empty")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return transport.ErrClosed
	}
	qu, ok := t.queues[q.Name]
	if !ok {
		qu = newQueue(t, q.Name, t.cfg.partitions)
		t.queues[q.Name] = qu
	}
	for _, ev := range q.Events {
		bound := false
		for _, b := range t.bindings[ev] {
			if b == qu {
				bound = true
			}
		}
		if !bound {
			t.bindings[ev] = append(t.bindings[ev], qu)
		}
	}
	return nil
}

// Publish validates e, copies it and enqueues it on its destination queue
// (commands and replies) or on every queue bound to its type (events).
func (t *Transport) Publish(ctx context.Context, e message.Envelope) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("inmem: publish %s: %w", e.ID, err)
	}
	if err := e.Validate(); err != nil {
		return err
	}
	data, err := encode(e, t.cfg.maxSize)
	if err != nil {
		return err
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return transport.ErrClosed
	}
	var targets []*queue
	if e.Kind == message.KindEvent {
		targets = append(targets, t.bindings[e.Type]...)
	} else if q, ok := t.queues[e.Destination]; ok {
		targets = append(targets, q)
	}
	t.mu.Unlock()
	if len(targets) == 0 && e.Kind != message.KindEvent {
		return fmt.Errorf("inmem: %s %s to %q: %w (declare the queue first)", e.Kind, e.ID, e.Destination, transport.ErrUnroutable)
	}
	p := transport.Partition(e.Key, t.cfg.partitions)
	for _, q := range targets {
		q.push(p, &item{data: data, id: e.ID})
	}
	return nil
}

// Consume delivers queue's messages to h until ctx is done; see
// transport.Transport. A second consumer of the same queue waits until the
// first one stops, then takes over its unsettled messages.
func (t *Transport) Consume(ctx context.Context, queue string, prefetch int, h transport.Handler) error {
	if prefetch < 1 {
		return fmt.Errorf("inmem: consume %s: prefetch %d must be at least 1", queue, prefetch)
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return transport.ErrClosed
	}
	q, ok := t.queues[queue]
	if ok {
		t.wg.Add(1)
	}
	t.mu.Unlock()
	if !ok {
		return fmt.Errorf("inmem: consume %s: %w (declare the queue first)", queue, transport.ErrUnroutable)
	}
	defer t.wg.Done()
	select {
	case q.slot <- struct{}{}:
	case <-ctx.Done():
		return nil
	case <-t.done:
		return transport.ErrClosed
	}
	defer func() { <-q.slot }()
	return q.serve(ctx, prefetch, h)
}

// DeadLetters returns up to limit dead letters, oldest first.
func (t *Transport) DeadLetters(_ context.Context, limit int) ([]transport.DeadLetter, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if limit <= 0 || limit > len(t.dead) {
		limit = len(t.dead)
	}
	return append([]transport.DeadLetter(nil), t.dead[:limit]...), nil
}

// Close stops every consumer, waits for them, and refuses further calls.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	queues := make([]*queue, 0, len(t.queues))
	for _, q := range t.queues {
		queues = append(queues, q)
	}
	t.mu.Unlock()
	for _, q := range queues {
		q.wake()
	}
	t.wg.Wait()
	return nil
}

// deadLetter records a dead letter, dropping the oldest past capacity.
func (t *Transport) deadLetter(queue string, it *item, reason error) {
	env, err := message.UnmarshalEnvelope(it.data, t.cfg.maxSize)
	if err != nil {
		env = message.Envelope{ID: it.id}
	}
	dl := transport.DeadLetter{Message: env, Queue: queue, Reason: reasonText(reason), Attempts: it.attempts, At: time.Now()}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.dead) >= t.cfg.deadCapacity {
		t.dead = t.dead[1:]
		t.dropped++
		t.cfg.logger.Warn("inmem: dead-letter list full; dropped the oldest", "capacity", t.cfg.deadCapacity, "dropped_total", t.dropped)
	}
	t.dead = append(t.dead, dl)
}

// encode is message.MarshalEnvelope without HTML escaping, which would
// rewrite '<', '>' and '&' in the payload: a message must come back byte
// for byte.
func encode(e message.Envelope, maxSize int) ([]byte, error) {
	if maxSize <= 0 {
		maxSize = message.DefaultMaxSize
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, fmt.Errorf("inmem: encode envelope %q of type %q: %w", e.ID, e.Type, err)
	}
	data := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(data) > maxSize {
		return nil, fmt.Errorf("%w: message %q of type %q is %d bytes, limit %d", message.ErrPayloadTooLarge, e.ID, e.Type, len(data), maxSize)
	}
	return data, nil
}

func reasonText(err error) string {
	if err == nil {
		return "no reason given"
	}
	return err.Error()
}
