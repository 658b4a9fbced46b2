package faulty

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// Option configures a Transport.
type Option func(*Transport)

// Duplicate hands every delivery to the consumer's handler twice, the copy
// right after the original (so both reach the same key's actor, one after
// the other).
func Duplicate() Option { return func(t *Transport) { t.duplicate = true } }

// DropAcks turns every nth Ack (n >= 1) into a Requeue: the consumer
// believes it acked, the wrapped transport delivers the message again, as
// a broker does when an ack is lost with its connection. n < 1 disables it.
func DropAcks(n int) Option { return func(t *Transport) { t.dropEvery = int64(n) } }

// Reorder swaps neighbours within a partition: a delivery is held back
// until the next delivery of its partition has been handed to the
// consumer, or until hold has passed (so a lone message, or a consumer
// with prefetch 1, is delayed, not stuck). Messages of one key then reach
// the consumer out of publish order, as after a redelivery from another
// node. hold <= 0 disables it.
func Reorder(hold time.Duration) Option { return func(t *Transport) { t.hold = hold } }

// Transport is a transport.Transport that injects faults into the
// deliveries of the transport it wraps. Make one with Wrap.
type Transport struct {
	transport.Transport
	duplicate bool
	dropEvery int64
	hold      time.Duration

	acks       atomic.Int64
	dropped    atomic.Int64
	duplicates atomic.Int64
	reordered  atomic.Int64
}

var _ transport.Transport = (*Transport)(nil)

// Unwrap returns the transport the faults are injected into
// (transport.Ready and transport.PublishReady ask it).
func (t *Transport) Unwrap() transport.Transport { return t.Transport }

// Wrap returns inner with the faults opts ask for. Closing the result
// closes inner.
func Wrap(inner transport.Transport, opts ...Option) *Transport {
	t := &Transport{Transport: inner}
	for _, o := range opts {
		o(t)
	}
	return t
}

// Stats counts the faults injected so far.
type Stats struct {
	// Duplicates is how many extra copies of deliveries were handed out.
	Duplicates int64
	// DroppedAcks is how many acks were turned into requeues.
	DroppedAcks int64
	// Reordered is how many deliveries were handed out after the one that
	// followed them.
	Reordered int64
}

// Stats returns the faults injected so far.
func (t *Transport) Stats() Stats {
	return Stats{Duplicates: t.duplicates.Load(), DroppedAcks: t.dropped.Load(), Reordered: t.reordered.Load()}
}

// Consume consumes queue from the wrapped transport and hands h the
// deliveries with the configured faults.
func (t *Transport) Consume(ctx context.Context, queue string, prefetch int, h transport.Handler) error {
	hand := func(ctx context.Context, d transport.Delivery) {
		copies := 1
		if t.duplicate {
			copies = 2
		}
		s := &settlement{t: t, inner: d, left: copies}
		for i := range copies {
			if i > 0 {
				t.duplicates.Add(1)
			}
			h(ctx, &delivery{s: s})
		}
	}
	if t.hold <= 0 {
		return t.Transport.Consume(ctx, queue, prefetch, hand)
	}
	r := &reorderer{t: t, hand: hand, held: make(map[int]*heldDelivery)}
	defer r.stop()
	return t.Transport.Consume(ctx, queue, prefetch, func(ctx context.Context, d transport.Delivery) {
		r.deliver(ctx, d)
	})
}

// reorderer holds back one delivery per partition (see Reorder).
type reorderer struct {
	t    *Transport
	hand transport.Handler
	mu   sync.Mutex
	held map[int]*heldDelivery
	done bool
}

type heldDelivery struct {
	ctx   context.Context
	d     transport.Delivery
	timer *time.Timer
}

func (r *reorderer) deliver(ctx context.Context, d transport.Delivery) {
	p := d.Partition()
	r.mu.Lock()
	prev := r.held[p]
	if prev == nil {
		hd := &heldDelivery{ctx: ctx, d: d}
		hd.timer = time.AfterFunc(r.t.hold, func() { r.release(p, hd) })
		r.held[p] = hd
		r.mu.Unlock()
		return
	}
	if !prev.timer.Stop() {
		// Its release is running; hand d on in order.
		r.mu.Unlock()
		r.hand(ctx, d)
		return
	}
	delete(r.held, p)
	r.mu.Unlock()
	r.t.reordered.Add(1)
	r.hand(ctx, d)
	r.hand(prev.ctx, prev.d)
}

// release hands on a delivery whose hold ran out.
func (r *reorderer) release(p int, hd *heldDelivery) {
	r.mu.Lock()
	if r.done || r.held[p] != hd {
		r.mu.Unlock()
		return
	}
	delete(r.held, p)
	r.mu.Unlock()
	r.hand(hd.ctx, hd.d)
}

// stop drops what is held when Consume returns: the wrapped transport
// takes unsettled deliveries back for redelivery.
func (r *reorderer) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done = true
	for p, hd := range r.held {
		hd.timer.Stop()
		delete(r.held, p)
	}
}

// settlement settles one wrapped delivery once all its copies are settled.
type settlement struct {
	t     *Transport
	inner transport.Delivery

	mu    sync.Mutex
	left  int
	first func(ctx context.Context) error // the first non-ack outcome
}

// settle records one copy's outcome (nil outcome: an ack). The last copy
// applies the result to the wrapped delivery and returns its error; the
// others return nil at once.
func (s *settlement) settle(ctx context.Context, outcome func(ctx context.Context) error) error {
	s.mu.Lock()
	if s.first == nil && outcome != nil {
		s.first = outcome
	}
	s.left--
	last := s.left == 0
	apply := s.first
	s.mu.Unlock()
	if !last {
		return nil
	}
	if apply != nil {
		return apply(ctx)
	}
	if n := s.t.dropEvery; n > 0 && s.t.acks.Add(1)%n == 0 {
		s.t.dropped.Add(1)
		return s.inner.Requeue(ctx, errors.New("faulty: ack dropped"))
	}
	return s.inner.Ack(ctx)
}

// delivery is one copy of a wrapped delivery.
type delivery struct {
	s       *settlement
	settled atomic.Bool
}

func (d *delivery) Envelope() message.Envelope { return d.s.inner.Envelope() }
func (d *delivery) Partition() int             { return d.s.inner.Partition() }
func (d *delivery) Attempt() int               { return d.s.inner.Attempt() }

func (d *delivery) once(ctx context.Context, outcome func(ctx context.Context) error) error {
	if !d.settled.CompareAndSwap(false, true) {
		return transport.ErrAlreadySettled
	}
	return d.s.settle(ctx, outcome)
}

// Ack implements transport.Delivery.
func (d *delivery) Ack(ctx context.Context) error { return d.once(ctx, nil) }

// Requeue implements transport.Delivery.
func (d *delivery) Requeue(ctx context.Context, reason error) error {
	return d.once(ctx, func(ctx context.Context) error { return d.s.inner.Requeue(ctx, reason) })
}

// Retry implements transport.Delivery.
func (d *delivery) Retry(ctx context.Context, delay time.Duration, reason error) error {
	return d.once(ctx, func(ctx context.Context) error { return d.s.inner.Retry(ctx, delay, reason) })
}

// DeadLetter implements transport.Delivery.
func (d *delivery) DeadLetter(ctx context.Context, reason error) error {
	return d.once(ctx, func(ctx context.Context) error { return d.s.inner.DeadLetter(ctx, reason) })
}
