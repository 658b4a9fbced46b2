package actors

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
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
