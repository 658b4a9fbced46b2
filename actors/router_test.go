package actors

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// fakeDelivery records how it was settled.
type fakeDelivery struct {
	env     message.Envelope
	mu      sync.Mutex
	settled string
	reason  error
	done    chan struct{}
}

func newFakeDelivery(key string, n int) *fakeDelivery {
	return &fakeDelivery{
		env:  message.Envelope{ID: fmt.Sprintf("%s-%d", key, n), Kind: message.KindCommand, Type: "t.T.v1", Key: key, Destination: "q"},
		done: make(chan struct{}),
	}
}

func (f *fakeDelivery) Envelope() message.Envelope { return f.env }
func (f *fakeDelivery) Partition() int             { return 0 }
func (f *fakeDelivery) Attempt() int               { return 1 }
func (f *fakeDelivery) settle(how string, reason error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.settled != "" {
		return transport.ErrAlreadySettled
	}
	f.settled, f.reason = how, reason
	close(f.done)
	return nil
}
func (f *fakeDelivery) Ack(context.Context) error                { return f.settle("ack", nil) }
func (f *fakeDelivery) Requeue(_ context.Context, r error) error { return f.settle("requeue", r) }
func (f *fakeDelivery) Retry(_ context.Context, _ time.Duration, r error) error {
	return f.settle("retry", r)
}
func (f *fakeDelivery) DeadLetter(_ context.Context, r error) error {
	return f.settle("deadletter", r)
}

func (f *fakeDelivery) wait(t *testing.T) (string, error) {
	t.Helper()
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("delivery %s never settled", f.env.ID)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.settled, f.reason
}

// recordingEntity acks deliveries, records their order per incarnation,
// and panics on IDs listed in panicOn.
type recordingEntity struct {
	log     *entityLog
	panicOn map[string]bool
}

type entityLog struct {
	mu      sync.Mutex
	handled []string
	spawns  atomic.Int32
}

func (r *recordingEntity) handle(ctx context.Context, d transport.Delivery) {
	id := d.Envelope().ID
	if r.panicOn[id] {
		panic("boom on " + id)
	}
	r.log.mu.Lock()
	r.log.handled = append(r.log.handled, id)
	r.log.mu.Unlock()
	_ = d.Ack(ctx)
}

func newTestSystem(t *testing.T) *actor.ActorSystem {
	t.Helper()
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
	t.Cleanup(sys.Shutdown)
	return sys
}

func TestRouterPassivatesIdleActorsAndRespawnsThem(t *testing.T) {
	sys := newTestSystem(t)
	log := &entityLog{}
	factory := func(key string) entity {
		log.spawns.Add(1)
		return &recordingEntity{log: log}
	}
	router := sys.Root.Spawn(RouterProps(context.Background(), factory, 20*time.Millisecond))

	first := newFakeDelivery("k", 1)
	sys.Root.Send(router, &deliveryMsg{d: first})
	if how, _ := first.wait(t); how != "ack" {
		t.Fatalf("first delivery settled by %s", how)
	}
	// After the idle time the actor is stopped; the next delivery spawns a
	// new one, which handles it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := newFakeDelivery("k", int(time.Now().UnixNano()))
		time.Sleep(50 * time.Millisecond)
		sys.Root.Send(router, &deliveryMsg{d: d})
		if how, _ := d.wait(t); how != "ack" {
			t.Fatalf("delivery after idle settled by %s", how)
		}
		if log.spawns.Load() >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("actor never passivated: %d spawns", log.spawns.Load())
		}
	}
}

func TestRouterKeepsOrderAndLosesNothingWhilePassivating(t *testing.T) {
	sys := newTestSystem(t)
	log := &entityLog{}
	factory := func(string) entity { log.spawns.Add(1); return &recordingEntity{log: log} }
	// An idle time of 1ms makes passivation race the deliveries constantly.
	router := sys.Root.Spawn(RouterProps(context.Background(), factory, time.Millisecond))
	var ds []*fakeDelivery
	for i := range 300 {
		d := newFakeDelivery("k", i)
		ds = append(ds, d)
		sys.Root.Send(router, &deliveryMsg{d: d})
		if i%10 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	for _, d := range ds {
		if how, _ := d.wait(t); how != "ack" {
			t.Fatalf("%s settled by %s", d.env.ID, how)
		}
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	for i, id := range log.handled {
		if want := fmt.Sprintf("k-%d", i); id != want {
			t.Fatalf("handled[%d] = %s, want %s (order broken or message lost)", i, id, want)
		}
	}
	if len(log.handled) != 300 {
		t.Fatalf("handled %d of 300", len(log.handled))
	}
	t.Logf("%d incarnations of the actor", log.spawns.Load())
}

func TestPanicRequeuesTheDeliveryAndRestartsTheActor(t *testing.T) {
	sys := newTestSystem(t)
	log := &entityLog{}
	factory := func(string) entity {
		log.spawns.Add(1)
		return &recordingEntity{log: log, panicOn: map[string]bool{"k-1": true}}
	}
	router := sys.Root.Spawn(RouterProps(context.Background(), factory, 0))
	poison, next := newFakeDelivery("k", 1), newFakeDelivery("k", 2)
	sys.Root.Send(router, &deliveryMsg{d: poison})
	sys.Root.Send(router, &deliveryMsg{d: next})
	how, reason := poison.wait(t)
	if how != "requeue" || reason == nil || !strings.Contains(reason.Error(), "boom on k-1") {
		t.Fatalf("poison settled by %s (%v), want requeue with the panic", how, reason)
	}
	if how, _ := next.wait(t); how != "ack" {
		t.Fatalf("next delivery settled by %s, want ack by the restarted actor", how)
	}
	if log.spawns.Load() < 2 {
		t.Errorf("entity made %d times, want a fresh one after the restart", log.spawns.Load())
	}
}
