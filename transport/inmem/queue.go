package inmem

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// item is one message in a partition.
type item struct {
	data     []byte
	id       string
	attempts int
}

// partition is a FIFO of pending items plus the leases of the items
// delivered and not yet settled, in delivery order.
type partition struct {
	pending  []*item
	inflight []*lease
}

// queue is one destination: its partitions and its consumer slot.
type queue struct {
	t    *Transport
	name string
	// slot holds a token while a consumer is active (single active consumer).
	slot  chan struct{}
	mu    sync.Mutex
	cond  *sync.Cond
	parts []*partition
}

func newQueue(t *Transport, name string, partitions int) *queue {
	q := &queue{t: t, name: name, slot: make(chan struct{}, 1), parts: make([]*partition, partitions)}
	q.cond = sync.NewCond(&q.mu)
	for i := range q.parts {
		q.parts[i] = &partition{}
	}
	return q
}

func (q *queue) push(p int, it *item) {
	q.mu.Lock()
	q.parts[p].pending = append(q.parts[p].pending, it)
	q.mu.Unlock()
	q.cond.Broadcast()
}

func (q *queue) wake() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.cond.Broadcast()
}

// consumer is one Consume call's state.
type consumer struct {
	stopped bool // guarded by q.mu
}

// serve runs one delivery loop per partition until ctx is done or the
// transport closes, then requeues this consumer's unsettled deliveries at
// the front of their partitions, in their original order.
func (q *queue) serve(ctx context.Context, prefetch int, h transport.Handler) error {
	c := &consumer{}
	watchDone := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-q.t.done:
		case <-watchDone:
		}
		q.mu.Lock()
		c.stopped = true
		q.mu.Unlock()
		q.cond.Broadcast()
	}()
	var wg sync.WaitGroup
	for p := range q.parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.deliverLoop(ctx, c, p, prefetch, h)
		}()
	}
	wg.Wait()
	close(watchDone)

	q.mu.Lock()
	for _, part := range q.parts {
		var back []*item
		for _, l := range part.inflight {
			if l.owner == c && !l.settled {
				l.settled, l.revoked = true, true
				back = append(back, l.it)
			}
		}
		part.inflight = slices.DeleteFunc(part.inflight, func(l *lease) bool { return l.owner == c })
		part.pending = append(back, part.pending...)
	}
	q.mu.Unlock()
	q.cond.Broadcast()
	select {
	case <-q.t.done:
		return transport.ErrClosed
	default:
		return nil
	}
}

func (q *queue) deliverLoop(ctx context.Context, c *consumer, p, prefetch int, h transport.Handler) {
	part := q.parts[p]
	for {
		q.mu.Lock()
		for !c.stopped && (len(part.pending) == 0 || len(part.inflight) >= prefetch) {
			q.cond.Wait()
		}
		if c.stopped {
			q.mu.Unlock()
			return
		}
		it := part.pending[0]
		part.pending[0] = nil
		part.pending = part.pending[1:]
		it.attempts++
		l := &lease{q: q, p: p, it: it, attempt: it.attempts, owner: c}
		part.inflight = append(part.inflight, l)
		q.mu.Unlock()

		env, err := message.UnmarshalEnvelope(it.data, q.t.cfg.maxSize)
		if err != nil {
			// Publish validated it; this is a bug, but lose nothing.
			_ = l.DeadLetter(context.Background(), fmt.Errorf("inmem: stored message no longer decodes: %w", err))
			continue
		}
		l.env = env
		h(ctx, l)
	}
}

// lease is a delivery: one item handed to one consumer until settled.
type lease struct {
	q       *queue
	p       int
	it      *item
	env     message.Envelope
	attempt int // it.attempts when delivered; it.attempts grows on redelivery
	owner   *consumer
	settled bool // guarded by q.mu
	revoked bool // guarded by q.mu: its consumer stopped and it was requeued
}

// Envelope is the delivered message.
func (l *lease) Envelope() message.Envelope { return l.env }

// Partition is the partition it came from.
func (l *lease) Partition() int { return l.p }

// Attempt counts deliveries of the message, from 1.
func (l *lease) Attempt() int { return l.attempt }

// settle marks the lease settled and removes it from the partition's
// in-flight list.
func (l *lease) settle() error {
	if l.revoked {
		return fmt.Errorf("inmem: message %s: its consumer stopped and it was requeued: %w", l.it.id, transport.ErrAlreadySettled)
	}
	if l.settled {
		return fmt.Errorf("inmem: message %s: %w", l.it.id, transport.ErrAlreadySettled)
	}
	l.settled = true
	part := l.q.parts[l.p]
	if i := slices.Index(part.inflight, l); i >= 0 {
		part.inflight = slices.Delete(part.inflight, i, i+1)
	}
	return nil
}

// Ack settles the delivery as handled.
func (l *lease) Ack(context.Context) error {
	l.q.mu.Lock()
	err := l.settle()
	l.q.mu.Unlock()
	l.q.cond.Broadcast()
	return err
}

// Requeue puts the message back at the front of its partition, or
// dead-letters it with reason once it has had its delivery limit.
func (l *lease) Requeue(_ context.Context, reason error) error {
	l.q.mu.Lock()
	if err := l.settle(); err != nil {
		l.q.mu.Unlock()
		return err
	}
	over := l.attempt >= l.q.t.cfg.limit
	if !over {
		part := l.q.parts[l.p]
		part.pending = append([]*item{l.it}, part.pending...)
	}
	l.q.mu.Unlock()
	l.q.cond.Broadcast()
	if over {
		l.q.t.deadLetter(l.q.name, l.it, fmt.Errorf("delivery limit %d reached; last error: %s", l.q.t.cfg.limit, reasonText(reason)))
	}
	return nil
}

// DeadLetter moves the message to the dead-letter list with reason.
func (l *lease) DeadLetter(_ context.Context, reason error) error {
	l.q.mu.Lock()
	err := l.settle()
	l.q.mu.Unlock()
	l.q.cond.Broadcast()
	if err != nil {
		return err
	}
	l.q.t.deadLetter(l.q.name, l.it, reason)
	return nil
}
