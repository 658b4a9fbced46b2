package engine

import (
	"context"
	"sync"
	"time"

	"github.com/sagaflow/sagaflow/transport"
)

// drainGate wraps the engine's transport so that a graceful stop can wait
// for the deliveries being handled. Until drain is called every delivery
// passes to the handler and is counted until it is settled; after, new
// deliveries are held unsettled, which stops the actors taking new work,
// and go back to their queue when the consumer stops.
type drainGate struct {
	transport.Transport
	mu       sync.Mutex
	draining bool
	inflight int
	idle     chan struct{} // closed once draining with nothing in flight
}

func newDrainGate(t transport.Transport) *drainGate {
	return &drainGate{Transport: t, idle: make(chan struct{})}
}

// Consume implements transport.Transport, counting what it hands to h.
func (g *drainGate) Consume(ctx context.Context, queue string, prefetch int, h transport.Handler) error {
	return g.Transport.Consume(ctx, queue, prefetch, func(ctx context.Context, d transport.Delivery) {
		if !g.enter() {
			return // held: the transport takes it back when Consume stops
		}
		h(ctx, &countedDelivery{Delivery: d, g: g})
	})
}

// Unwrap returns the gated transport (transport.Ready and
// transport.PublishReady ask it).
func (g *drainGate) Unwrap() transport.Transport { return g.Transport }

func (g *drainGate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.draining {
		return false
	}
	g.inflight++
	return true
}

func (g *drainGate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inflight--
	if g.draining && g.inflight == 0 {
		close(g.idle)
	}
}

// drain stops handing out deliveries and waits until the ones handed out
// are settled or ctx ends; it returns how many were still in flight.
func (g *drainGate) drain(ctx context.Context) int {
	g.mu.Lock()
	if !g.draining {
		g.draining = true
		if g.inflight == 0 {
			close(g.idle)
		}
	}
	g.mu.Unlock()
	select {
	case <-g.idle:
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inflight
}

// countedDelivery leaves the gate on its first settle.
type countedDelivery struct {
	transport.Delivery
	g    *drainGate
	once sync.Once
}

func (d *countedDelivery) done() { d.once.Do(d.g.leave) }

// Ack implements transport.Delivery.
func (d *countedDelivery) Ack(ctx context.Context) error {
	defer d.done()
	return d.Delivery.Ack(ctx)
}

// Requeue implements transport.Delivery.
func (d *countedDelivery) Requeue(ctx context.Context, reason error) error {
	defer d.done()
	return d.Delivery.Requeue(ctx, reason)
}

// Retry implements transport.Delivery.
func (d *countedDelivery) Retry(ctx context.Context, delay time.Duration, reason error) error {
	defer d.done()
	return d.Delivery.Retry(ctx, delay, reason)
}

// DeadLetter implements transport.Delivery.
func (d *countedDelivery) DeadLetter(ctx context.Context, reason error) error {
	defer d.done()
	return d.Delivery.DeadLetter(ctx, reason)
}
