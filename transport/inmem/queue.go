package inmem

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// item is one message in one queue's partition. An event copied to several
// queues is one item per queue sharing the same (read-only) bytes.
type item struct {
	data     []byte // the encoded envelope
	id       string // the message ID, for errors
	seq      uint64 // publish order within the partition
	attempts int    // deliveries so far; guarded by the partition's mu
}

// partition is one FIFO of a queue. pending is always in publish order:
// new items go to the back, and items that come back (Requeue, a stopped
// consumer's unsettled deliveries) go to their place by seq, which is ahead
// of every item not yet delivered. inflight holds the leases of the active
// consumer's unsettled deliveries, in delivery order.
type partition struct {
	mu   sync.Mutex
	cond *sync.Cond // on mu: pending grew, a lease was settled, or the consumer stops
	// pending is bounded only by what producers publish; see the package doc.
	pending  []*item
	inflight []*lease
	nextSeq  uint64
}

func newPartition() *partition {
	p := &partition{}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// push appends a newly published item.
func (p *partition) push(it *item) {
	p.mu.Lock()
	it.seq = p.nextSeq
	p.nextSeq++
	p.pending = append(p.pending, it)
	p.mu.Unlock()
	p.cond.Broadcast()
}

// putBack returns a delivered item to pending, at its place in publish
// order. The caller holds p.mu.
func (p *partition) putBack(it *item) {
	i := sort.Search(len(p.pending), func(i int) bool { return p.pending[i].seq > it.seq })
	p.pending = slices.Insert(p.pending, i, it)
}

// revoke takes back the unsettled deliveries of consumer c: their leases
// can no longer be settled and their items are pending again, in publish
// order, ahead of everything not delivered yet.
func (p *partition) revoke(c *consumer) {
	p.mu.Lock()
	for _, l := range p.inflight {
		if l.owner == c {
			l.revoked = true
			p.putBack(l.it)
		}
	}
	p.inflight = slices.DeleteFunc(p.inflight, func(l *lease) bool { return l.owner == c })
	p.mu.Unlock()
	p.cond.Broadcast()
}

// queue is one destination: its partitions and its consumer slot.
type queue struct {
	t    *Transport
	name string
	// slot holds a token while a consumer is active (single active
	// consumer); standby consumers wait to send theirs.
	slot  chan struct{}
	parts []*partition
}

func newQueue(t *Transport, name string, partitions int) *queue {
	q := &queue{t: t, name: name, slot: make(chan struct{}, 1), parts: make([]*partition, partitions)}
	for i := range q.parts {
		q.parts[i] = newPartition()
	}
	return q
}

// consumer is one active Consume call.
type consumer struct {
	stopped atomic.Bool // set once, before the partitions' conds are broadcast
}

// serve runs one delivery loop per partition, and a goroutine that stops
// them when ctx is done or the transport closes; it waits for all of them,
// then takes back this consumer's unsettled deliveries.
func (q *queue) serve(ctx context.Context, prefetch int, h transport.Handler) error {
	c := &consumer{}
	var wg sync.WaitGroup
	wg.Add(1 + len(q.parts))
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
		case <-q.t.done:
		}
		c.stopped.Store(true)
		for _, part := range q.parts {
			// Under mu, so that no loop misses the wake-up between its
			// check of stopped and its Wait.
			part.mu.Lock()
			part.cond.Broadcast()
			part.mu.Unlock()
		}
	}()
	for p, part := range q.parts {
		go func() {
			defer wg.Done()
			q.deliver(ctx, c, p, part, prefetch, h)
		}()
	}
	wg.Wait()
	for _, part := range q.parts {
		part.revoke(c)
	}
	select {
	case <-q.t.done:
		return transport.ErrClosed
	default:
		return nil
	}
}

// deliver hands partition p's items to h in order, keeping at most
// prefetch unsettled, until c stops.
func (q *queue) deliver(ctx context.Context, c *consumer, p int, part *partition, prefetch int, h transport.Handler) {
	for {
		part.mu.Lock()
		for !c.stopped.Load() && (len(part.pending) == 0 || len(part.inflight) >= prefetch) {
			part.cond.Wait()
		}
		if c.stopped.Load() {
			part.mu.Unlock()
			return
		}
		it := part.pending[0]
		part.pending[0] = nil
		part.pending = part.pending[1:]
		it.attempts++
		l := &lease{q: q, part: part, p: p, it: it, attempt: it.attempts, owner: c}
		part.inflight = append(part.inflight, l)
		part.mu.Unlock()

		// A fresh decode per delivery: consumers never share memory with
		// the publisher or with each other.
		env, err := message.UnmarshalEnvelope(it.data, q.t.cfg.maxSize)
		if err != nil {
			// Publish encoded and validated it, so this is a bug; park
			// the message rather than lose it.
			_ = l.DeadLetter(context.Background(), fmt.Errorf("inmem: stored message no longer decodes: %w", err))
			continue
		}
		l.env = env
		h(ctx, l)
	}
}

// lease is a delivery: one item handed to one consumer until it is settled
// or the consumer stops (revoked).
type lease struct {
	q       *queue
	part    *partition
	p       int
	it      *item
	env     message.Envelope
	attempt int // it.attempts at delivery; it.attempts grows on redelivery
	owner   *consumer
	settled bool // guarded by part.mu
	revoked bool // guarded by part.mu: its consumer stopped and it is pending again
}

// Envelope is the delivered message.
func (l *lease) Envelope() message.Envelope { return l.env }

// Partition is the partition it came from.
func (l *lease) Partition() int { return l.p }

// Attempt counts deliveries of the message, from 1.
func (l *lease) Attempt() int { return l.attempt }

// settle marks the lease settled and drops it from the in-flight list.
// The caller holds part.mu.
func (l *lease) settle() error {
	if l.revoked {
		return fmt.Errorf("inmem: message %s on %s: its consumer stopped and it was requeued: %w", l.it.id, l.q.name, transport.ErrAlreadySettled)
	}
	if l.settled {
		return fmt.Errorf("inmem: message %s on %s: %w", l.it.id, l.q.name, transport.ErrAlreadySettled)
	}
	l.settled = true
	if i := slices.Index(l.part.inflight, l); i >= 0 {
		l.part.inflight = slices.Delete(l.part.inflight, i, i+1)
	}
	return nil
}

// Ack settles the delivery as handled; the message is gone.
func (l *lease) Ack(context.Context) error {
	l.part.mu.Lock()
	err := l.settle()
	l.part.mu.Unlock()
	if err == nil {
		l.part.cond.Broadcast() // a prefetch slot is free
	}
	return err
}

// Requeue puts the message back at the front of its partition (ahead of
// everything published after it), or dead-letters it with reason once it
// has had its delivery limit.
func (l *lease) Requeue(_ context.Context, reason error) error {
	limit := l.q.t.cfg.limit
	l.part.mu.Lock()
	err := l.settle()
	over := l.attempt >= limit
	if err == nil && !over {
		l.part.putBack(l.it)
	}
	l.part.mu.Unlock()
	if err != nil {
		return err
	}
	l.part.cond.Broadcast()
	if over {
		l.q.t.deadLetter(l.q.name, l.it, l.attempt, fmt.Errorf("delivery limit %d reached; last error: %s", limit, reasonText(reason)))
	}
	return nil
}

// Retry puts the message back at the back of its partition once delay
// has passed (as if published then), or dead-letters it with reason once
// it has had its delivery limit. A message whose delay ends after Close
// is gone with the rest of the transport's memory.
func (l *lease) Retry(_ context.Context, delay time.Duration, reason error) error {
	limit := l.q.t.cfg.limit
	l.part.mu.Lock()
	err := l.settle()
	l.part.mu.Unlock()
	if err != nil {
		return err
	}
	l.part.cond.Broadcast() // a prefetch slot is free
	if l.attempt >= limit {
		l.q.t.deadLetter(l.q.name, l.it, l.attempt, fmt.Errorf("delivery limit %d reached; last error: %s", limit, reasonText(reason)))
		return nil
	}
	time.AfterFunc(max(delay, 0), func() {
		select {
		case <-l.q.t.done:
		default:
			l.part.push(l.it)
		}
	})
	return nil
}

// DeadLetter moves the message to the dead-letter list with reason.
func (l *lease) DeadLetter(_ context.Context, reason error) error {
	l.part.mu.Lock()
	err := l.settle()
	l.part.mu.Unlock()
	if err != nil {
		return err
	}
	l.part.cond.Broadcast()
	l.q.t.deadLetter(l.q.name, l.it, l.attempt, reason)
	return nil
}
