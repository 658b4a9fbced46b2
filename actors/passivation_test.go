package actors

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// TestPassivatedActorsAreCollected spawns many keyed actors through one
// router, lets them passivate, and checks that the garbage collector frees
// every entity: a stopped actor must not stay reachable from the router
// (nor from Proto.Actor's record of the router's children).
func TestPassivatedActorsAreCollected(t *testing.T) {
	const n = 2000
	sys := newTestSystem(t)
	log := &entityLog{}
	var collected atomic.Int64
	factory := func(string) entity {
		log.spawns.Add(1)
		e := &recordingEntity{log: log}
		runtime.AddCleanup(e, func(c *atomic.Int64) { c.Add(1) }, &collected)
		return e
	}
	router := sys.Root.Spawn(RouterProps(context.Background(), factory, 10*time.Millisecond))
	deliverToEachKey(t, sys, router, n)
	if got := log.spawns.Load(); got != n {
		t.Fatalf("%d entities made for %d keys", got, n)
	}
	// Every actor is idle now: within a few passivation ticks the router
	// stops all of them, and then nothing may keep their entities alive.
	deadline := time.Now().Add(10 * time.Second)
	for collected.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d entities collected after passivation: stopped actors are still reachable", collected.Load(), n)
		}
		time.Sleep(20 * time.Millisecond)
		runtime.GC()
	}
}

// TestPassivationStopsIdleActorsInWaves holds every keyed actor that
// stops, and checks that the router stops one wave of them and waits for
// those to terminate, up to the stall limit. Then it lets them go and
// checks that the later waves stop every other idle actor. The test sends
// the passivation ticks itself.
func TestPassivationStopsIdleActorsInWaves(t *testing.T) {
	const n = 3*passivationWaveSize + 10
	gate := make(chan struct{})
	var stopping atomic.Int64
	log := &entityLog{}
	hook := func(e entity) {
		// Only this test's actors: other tests' systems may still run.
		if r, ok := e.(*recordingEntity); !ok || r.log != log {
			return
		}
		stopping.Add(1)
		<-gate
	}
	testHookKeyedStopping.Store(&hook)
	t.Cleanup(func() { testHookKeyedStopping.Store(nil) })
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
		}
	}
	t.Cleanup(release)

	sys := newTestSystem(t)
	factory := func(string) entity { return &recordingEntity{log: log} }
	const idle = 10 * time.Millisecond
	router := sys.Root.Spawn(routerProps(context.Background(), factory, idle, time.Hour))
	deliverToEachKey(t, sys, router, n)
	time.Sleep(3 * idle)
	deadline := time.Now().Add(10 * time.Second)
	waitFor := func(want int64, what string) {
		t.Helper()
		for stopping.Load() < want {
			if time.Now().After(deadline) {
				t.Fatalf("%d actors stopping, want %d %s", stopping.Load(), want, what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	held := func(want int64, what string) {
		t.Helper()
		time.Sleep(50 * time.Millisecond)
		if got := stopping.Load(); got != want {
			t.Fatalf("%d actors stopping %s, want %d", got, what, want)
		}
	}
	tick := func() { sys.Root.Send(router, &passivationTick{}) }

	tick()
	waitFor(passivationWaveSize, "in the first wave")
	held(passivationWaveSize, "while the first wave is held")
	for range stalledWaveTicks {
		tick()
	}
	held(passivationWaveSize, "after ticks within the stall limit")
	// One tick more: the held wave is presumed stalled, a new one starts.
	tick()
	waitFor(2*passivationWaveSize, "in the wave after a stalled one")
	held(2*passivationWaveSize, "while the second wave is held")

	release()
	waitFor(n, "once the waves are let go")
}

// deliverToEachKey sends one delivery to each of n keys through router and
// waits until every one is acknowledged.
func deliverToEachKey(t *testing.T, sys *actor.ActorSystem, router *actor.PID, n int) {
	t.Helper()
	ds := make([]*fakeDelivery, n)
	for i := range n {
		ds[i] = newFakeDelivery(fmt.Sprintf("key-%05d", i), 1)
		sys.Root.Send(router, &deliveryMsg{d: ds[i]})
	}
	for _, d := range ds {
		if how, _ := d.wait(t); how != "ack" {
			t.Fatalf("%s settled by %s", d.env.ID, how)
		}
	}
}

func TestRoutersFirstPassivationTicksAreSpreadOverAPeriod(t *testing.T) {
	const every = time.Second
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for range 256 {
		d := staggeredFirstTick(every)
		if d < every/2 || d >= every+every/2 {
			t.Fatalf("first tick after %v, want within [%v, %v)", d, every/2, every+every/2)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	// 256 routers started together: their phases must not bunch.
	if hi-lo < every*3/4 {
		t.Errorf("256 first ticks fall within %v of each other, want them spread over most of the %v period", hi-lo, every)
	}
}
