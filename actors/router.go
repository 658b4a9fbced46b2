package actors

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/sagaflow/sagaflow/transport"
)

// deliveryMsg carries a transport delivery through actor mailboxes.
type deliveryMsg struct {
	d transport.Delivery
	// activity is set by the router when it forwards the delivery to the
	// key's actor, which reports on it when it has handled it.
	activity *activity
}

// passivationTick makes a router stop the keyed actors that have been idle.
type passivationTick struct{}

// entity is the per-key logic a keyed actor runs: load state on demand,
// handle one delivery at a time, settle it.
type entity interface {
	handle(ctx context.Context, d transport.Delivery)
}

// EntityFactory makes the entity for a key; the key's actor calls it on its
// first delivery (and again on the first after a restart).
type EntityFactory func(key string) entity

// activity is what a keyed actor reports to its router without messages:
// how many deliveries it finished (across restarts) and when it last
// finished one.
type activity struct {
	finished atomic.Uint64
	lastDone atomic.Int64 // unix nanoseconds
}

// child is the router's record of one keyed actor.
type child struct {
	pid       *actor.PID
	forwarded uint64
	activity  activity
}

// routerActor owns the keyed actors of one partition of one queue: it
// spawns the actor of a key on its first delivery, forwards deliveries in
// arrival order, and on each passivation tick stops the actors that have
// been idle for the idle time and have finished every delivery forwarded
// to them, so a stopped mailbox never drops a message.
//
// Passivation does not use Proto.Actor's receive timeout: at the pinned
// version its timer races with the mailbox (asynkron/protoactor-go#1139),
// and a timer per actor costs memory that an idle actor should not.
type routerActor struct {
	idle time.Duration
	// tickEvery is the time between passivation ticks (half the idle
	// time).
	tickEvery time.Duration
	children  map[string]*child
	// peak is the most children since the map was last made: a Go map
	// keeps the room of its largest size, so after passivation freed
	// most of it the router moves the rest to a new map.
	peak     int
	stopTick chan struct{}
	// wave is the passivation in progress: it stops idle children a
	// wave at a time (see passivateIdle).
	wave passivationWave
	// childProps are shared by all the router's keyed actors: an actor
	// learns its key from its first delivery, so that an idle actor costs
	// no props or producer of its own.
	childProps *actor.Props
}

// keyedShared is what every keyed actor of one router needs.
type keyedShared struct {
	newEntity EntityFactory
	ctx       context.Context
}

// RouterProps returns the props of a partition router whose keyed actors
// run entities made by newEntity and passivate after idle (0: never).
func RouterProps(ctx context.Context, newEntity EntityFactory, idle time.Duration) *actor.Props {
	return routerProps(ctx, newEntity, idle, idle/2)
}

// routerProps is RouterProps with the time between passivation ticks.
func routerProps(ctx context.Context, newEntity EntityFactory, idle, tickEvery time.Duration) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		shared := &keyedShared{newEntity: newEntity, ctx: ctx}
		return &routerActor{
			idle: idle, tickEvery: tickEvery, children: make(map[string]*child),
			// An idle keyed mailbox owns no queue (mailbox.go).
			childProps: actor.PropsFromProducer(func() actor.Actor { return &keyedActor{shared: shared} },
				actor.WithMailbox(newKeyedMailbox), actor.WithDispatcher(keyedDispatcher)),
		}
	}, actor.WithSupervisor(actor.NewRestartingStrategy()))
}

// Receive implements actor.Actor.
func (r *routerActor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *deliveryMsg:
		key := m.d.Envelope().Key
		ch, ok := r.children[key]
		if !ok {
			ch = &child{}
			ch.activity.lastDone.Store(time.Now().UnixNano())
			ch.pid = c.SpawnPrefix(r.childProps, key+childKeyEnd)
			r.children[key] = ch
			r.peak = max(r.peak, len(r.children))
		}
		ch.forwarded++
		m.activity = &ch.activity
		c.Send(ch.pid, m)
	case *passivationTick:
		r.passivateIdle(c)
	case *actor.Started:
		r.startTicker(c)
	case *actor.Stopping, *actor.Restarting:
		r.stopTicker()
	case *actor.Terminated:
		r.forget(c, m.Who)
		if r.wave.terminated() {
			r.stopWave(c)
		}
	}
}

// childKeyEnd ends the key in a keyed actor's name (the router's ID, "/",
// the key, then Proto.Actor's "$" and sequence number), so that the router
// finds the key of a terminated child without a scan of its children.
const childKeyEnd = "#"

// forget drops the record of a child that terminated, if it is still the
// key's actor (a passivated child was dropped when it was stopped).
//
// Proto.Actor has just removed the child from the router's children set,
// whose Remove shrinks the set's slice and leaves the vacated slot of the
// backing array holding a *PID. A PID caches its process (mailbox, context,
// actor and entity), so without clearing that slot every passivated actor
// could stay reachable until a later spawn overwrote it.
func (r *routerActor) forget(c actor.Context, who *actor.PID) {
	if pids := c.Children(); len(pids) < cap(pids) {
		pids[:len(pids)+1][len(pids)] = nil
	}
	name, ok := strings.CutPrefix(who.Id, c.Self().Id+"/")
	if !ok {
		return
	}
	i := strings.LastIndex(name, childKeyEnd)
	if i < 0 {
		return
	}
	if ch, ok := r.children[name[:i]]; ok && ch.pid.Equal(who) {
		delete(r.children, name[:i])
	}
}

// startTicker starts the goroutine that sends passivation ticks every
// tickEvery; the router stops it when it stops or restarts.
func (r *routerActor) startTicker(c actor.Context) {
	if r.idle <= 0 || r.stopTick != nil {
		return
	}
	stop := make(chan struct{})
	r.stopTick = stop
	every := max(r.tickEvery, time.Millisecond)
	system, self := c.ActorSystem(), c.Self()
	go func() {
		first := time.NewTimer(staggeredFirstTick(every))
		select {
		case <-stop:
			first.Stop()
			return
		case <-first.C:
			system.Root.Send(self, &passivationTick{})
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				system.Root.Send(self, &passivationTick{})
			}
		}
	}()
}

// staggeredFirstTick is the delay of a router's first passivation tick:
// a random time between half a period and one and a half. The engine
// starts its routers together (one per partition and queue); with the same
// first tick they would all stop their idle actors at the same moments,
// and each stop wakes two goroutines, a burst the sagas in flight wait
// behind. Random phases spread the stops over the period.
func staggeredFirstTick(every time.Duration) time.Duration {
	return every/2 + rand.N(every)
}

func (r *routerActor) stopTicker() {
	if r.stopTick != nil {
		close(r.stopTick)
		r.stopTick = nil
	}
}

// passivationWave is the state of a router's passivation: the idle
// cutoff it stops children by, and how many children of its current wave
// have not terminated yet. A passivation is under way while pending > 0.
type passivationWave struct {
	cutoff  int64 // unix nanoseconds: children idle since before it stop
	pending int
	// ticks counts the passivation ticks that came while the wave waited.
	ticks int
}

// stalledWaveTicks is how many ticks a wave may wait for its children's
// Terminated before a tick presumes it stalled and starts a new one.
const stalledWaveTicks = 4

// terminated counts a child's termination against the current wave, and
// says whether the wave is over and the next one is due.
func (w *passivationWave) terminated() bool {
	if w.pending == 0 {
		return false
	}
	w.pending--
	return w.pending == 0
}

// passivationWaveSize is how many children a router stops at a time.
// Each stop runs on a goroutine of its own, and the Go runtime keeps the
// descriptor of every goroutine it ever ran at once (about 480 bytes):
// stopping 100,000 idle actors in one go left 30 MiB of them behind.
const passivationWaveSize = 256

// passivateIdle starts stopping the children idle for the idle time with
// nothing in their mailbox, unless a passivation is still under way. One
// whose wave has waited stalledWaveTicks ticks is given up (a child's
// Terminated never came) and a new one starts.
func (r *routerActor) passivateIdle(c actor.Context) {
	if r.wave.pending > 0 && r.wave.ticks < stalledWaveTicks {
		r.wave.ticks++
		return
	}
	r.wave = passivationWave{cutoff: time.Now().Add(-r.idle).UnixNano()}
	r.stopWave(c)
}

// stopWave stops up to passivationWaveSize children that were idle since
// the wave's cutoff; the next wave starts when they have all terminated.
// When no idle child is left, the passivation ends and the children map
// is remade if it shrank enough.
func (r *routerActor) stopWave(c actor.Context) {
	for key, ch := range r.children {
		if r.wave.pending == passivationWaveSize {
			return
		}
		if ch.activity.finished.Load() != ch.forwarded || ch.activity.lastDone.Load() > r.wave.cutoff {
			continue
		}
		delete(r.children, key)
		c.Stop(ch.pid)
		r.wave.pending++
	}
	if r.wave.pending > 0 {
		return
	}
	if r.peak >= shrinkChildrenFrom && len(r.children) <= r.peak/4 {
		children := make(map[string]*child, len(r.children))
		for key, ch := range r.children {
			children[key] = ch
		}
		r.children, r.peak = children, len(children)
	}
}

// shrinkChildrenFrom is the peak number of children from which a router
// remakes its map once three quarters of them were passivated.
const shrinkChildrenFrom = 1024

// keyedActor runs one key's entity, made on its first delivery. A panic
// while handling requeues the delivery and is re-raised so the supervisor
// restarts the actor, which makes a fresh entity that reloads its state.
type keyedActor struct {
	shared *keyedShared
	entity entity
}

// Receive implements actor.Actor.
func (k *keyedActor) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *deliveryMsg:
		k.receiveDelivery(m.d, m.activity)
	case *actor.Stopping:
		if hook := testHookKeyedStopping.Load(); hook != nil {
			(*hook)(k.entity)
		}
	}
}

// testHookKeyedStopping, when a test sets it, runs in every keyed actor as
// it stops, with the actor's entity.
var testHookKeyedStopping atomic.Pointer[func(entity)]

func (k *keyedActor) receiveDelivery(d transport.Delivery, act *activity) {
	defer func() {
		act.lastDone.Store(time.Now().UnixNano())
		act.finished.Add(1)
	}()
	defer func() {
		if p := recover(); p != nil {
			e := d.Envelope()
			reason := fmt.Errorf("panic handling %s %s for key %q: %v", e.Type, e.ID, e.Key, p)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = d.Requeue(ctx, reason)
			panic(p)
		}
	}()
	if k.entity == nil {
		k.entity = k.shared.newEntity(d.Envelope().Key)
	}
	k.entity.handle(k.shared.ctx, d)
}
