package actors

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/sagaflow/sagaflow/transport"
)

// Consumer takes the deliveries of one queue and hands each to the router
// actor of its partition, which hands it to the actor of its key.
type Consumer struct {
	system     *actor.ActorSystem
	deps       *Deps
	queue      string
	partitions int
	prefetch   int
	routers    []*actor.PID
}

// NewConsumer spawns one router per partition of queue; each router spawns
// keyed actors made by factory, passivated after idle (0: never).
func NewConsumer(ctx context.Context, system *actor.ActorSystem, deps *Deps, queue string, partitions, prefetch int, factory EntityFactory, idle time.Duration) *Consumer {
	c := &Consumer{system: system, deps: deps, queue: queue, partitions: partitions, prefetch: prefetch}
	props := RouterProps(ctx, factory, idle)
	for range partitions {
		c.routers = append(c.routers, system.Root.Spawn(props))
	}
	return c
}

// Run consumes until ctx is done. The transport bounds the deliveries in
// flight (prefetch per partition), which bounds every mailbox behind it.
func (c *Consumer) Run(ctx context.Context) error {
	err := c.deps.Transport.Consume(ctx, c.queue, c.prefetch, func(_ context.Context, d transport.Delivery) {
		p := d.Partition()
		if p < 0 || p >= len(c.routers) {
			c.deps.requeue(d, fmt.Errorf("partition %d outside 0..%d", p, len(c.routers)-1))
			return
		}
		if err := admit(d.Envelope(), c.queue == c.deps.SagaQueue); err != nil {
			c.deps.deadLetter(d, err)
			return
		}
		c.system.Root.Send(c.routers[p], &deliveryMsg{d: d})
	})
	if err != nil {
		return fmt.Errorf("consume %s: %w", c.queue, err)
	}
	return nil
}

// Stop stops the routers and, with them, their keyed actors.
func (c *Consumer) Stop() {
	for _, pid := range c.routers {
		_ = c.system.Root.StopFuture(pid).Wait()
	}
}
