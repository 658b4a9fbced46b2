package actors

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/sagaflow/sagaflow/transport"
)

// deliveryMsg carries a transport delivery through actor mailboxes.
type deliveryMsg struct {
	d transport.Delivery
}

// passivateRequest is sent by an idle keyed actor to its router.
type passivateRequest struct {
	key string
	pid *actor.PID
}

// entity is the per-key logic a keyed actor runs: load state on demand,
// handle one delivery at a time, settle it.
type entity interface {
	handle(ctx context.Context, d transport.Delivery)
}

// EntityFactory makes the entity for a key; the router calls it when it
// spawns (and the supervisor when it restarts) the key's actor.
type EntityFactory func(key string) entity

// child is the router's record of one keyed actor.
type child struct {
	pid       *actor.PID
	forwarded uint64
	finished  *atomic.Uint64 // deliveries the actor finished, across restarts
}

// routerActor owns the keyed actors of one partition of one queue: it
// spawns the actor of a key on its first delivery, forwards deliveries in
// arrival order, and stops an idle actor only when it has finished every
// delivery forwarded to it.
type routerActor struct {
	newEntity EntityFactory
	idle      time.Duration
	children  map[string]*child
	ctx       context.Context
}

// RouterProps returns the props of a partition router whose keyed actors
// run entities made by newEntity and passivate after idle (0: never).
func RouterProps(ctx context.Context, newEntity EntityFactory, idle time.Duration) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &routerActor{newEntity: newEntity, idle: idle, children: make(map[string]*child), ctx: ctx}
	}, actor.WithSupervisor(actor.NewRestartingStrategy()))
}

// Receive implements actor.Actor.
func (r *routerActor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *deliveryMsg:
		key := m.d.Envelope().Key
		ch, ok := r.children[key]
		if !ok {
			ch = &child{finished: new(atomic.Uint64)}
			finished, newEntity, idle, ctx := ch.finished, r.newEntity, r.idle, r.ctx
			props := actor.PropsFromProducer(func() actor.Actor {
				return &keyedActor{key: key, entity: newEntity(key), finished: finished, idle: idle, ctx: ctx}
			})
			ch.pid = c.Spawn(props)
			r.children[key] = ch
		}
		ch.forwarded++
		c.Send(ch.pid, m)
	case *passivateRequest:
		ch, ok := r.children[m.key]
		if !ok || !ch.pid.Equal(m.pid) {
			return
		}
		if ch.finished.Load() != ch.forwarded {
			return // deliveries are queued: stay alive
		}
		delete(r.children, m.key)
		c.Stop(ch.pid)
	case *actor.Terminated:
		for key, ch := range r.children {
			if ch.pid.Equal(m.Who) {
				delete(r.children, key)
			}
		}
	}
}

// keyedActor runs one key's entity. A panic while handling requeues the
// delivery and is re-raised so the supervisor restarts the actor with a
// fresh entity that reloads its state.
type keyedActor struct {
	key      string
	entity   entity
	finished *atomic.Uint64
	idle     time.Duration
	ctx      context.Context
}

// Receive implements actor.Actor.
func (k *keyedActor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *actor.Started:
		if k.idle > 0 {
			c.SetReceiveTimeout(k.idle)
		}
	case *actor.ReceiveTimeout:
		c.Send(c.Parent(), &passivateRequest{key: k.key, pid: c.Self()})
	case *deliveryMsg:
		k.receiveDelivery(m.d)
	}
}

func (k *keyedActor) receiveDelivery(d transport.Delivery) {
	defer k.finished.Add(1)
	defer func() {
		if p := recover(); p != nil {
			e := d.Envelope()
			reason := fmt.Errorf("panic handling %s %s for key %q: %v", e.Type, e.ID, k.key, p)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = d.Requeue(ctx, reason)
			panic(p)
		}
	}()
	k.entity.handle(k.ctx, d)
}
