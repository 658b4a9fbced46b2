package actors

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
)

type tick struct {
	N int `json:"n"`
}

// timerRig is a timer service over a real embedded store and an
// in-process transport, and a consumer of the queue its timers go to.
type timerRig struct {
	deps  *Deps
	fired chan string
}

func newTimerRig(t *testing.T, interval time.Duration) *timerRig {
	t.Helper()
	ctx := t.Context()
	st, tr := openRigParts(t)
	if err := tr.Declare(ctx, transport.Queue{Name: "ticks"}); err != nil {
		t.Fatal(err)
	}
	reg := message.NewRegistry(message.JSON{})
	if err := message.Register[tick](reg, "test.Tick.v1"); err != nil {
		t.Fatal(err)
	}
	deps := &Deps{Store: st, Transport: tr, Registry: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r := &timerRig{deps: deps, fired: make(chan string, 16)}
	go func() {
		_ = tr.Consume(ctx, "ticks", 16, func(ctx context.Context, d transport.Delivery) {
			r.fired <- d.Envelope().ID
			_ = d.Ack(ctx)
		})
	}()
	svc := NewTimerService(deps)
	svc.Interval = interval
	done := make(chan struct{})
	go func() { _ = svc.Run(ctx); close(done) }()
	t.Cleanup(func() { <-done })
	// Run registers its wake-up before anything else; wait for it.
	for deps.wake.Load() == nil {
		time.Sleep(time.Millisecond)
	}
	return r
}

// set commits a timer due after d on a stream of its own; told says
// whether the timer service is told of it, as the saga actor tells it.
func (r *timerRig) set(t *testing.T, stream string, d time.Duration, told bool) store.Timer {
	t.Helper()
	env, err := r.deps.Registry.New(message.KindCommand, stream, &tick{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	env.Destination, env.Source = "ticks", "test"
	timer := store.Timer{ID: message.NewID(), Stream: stream, DueAt: time.Now().Add(d), Message: env}
	c := store.Commit{Stream: stream, Version: 1, Timers: []store.Timer{timer}, At: time.Now()}
	if err := r.deps.Store.Append(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if told {
		r.deps.timersSet(c.Timers)
	}
	return timer
}

func (r *timerRig) waitFired(t *testing.T, id string, within time.Duration) time.Time {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case got := <-r.fired:
			if got == id {
				return time.Now()
			}
		case <-deadline:
			t.Fatalf("timer message %s not delivered within %v", id, within)
		}
	}
}

// TestTimerServiceWakesForTimersItIsToldOf: with a store poll far beyond
// the test, a timer the service was told of fires when due, not before.
func TestTimerServiceWakesForTimersItIsToldOf(t *testing.T) {
	r := newTimerRig(t, time.Hour)
	// Let the first poll (at start) pass, so only the wake-up can fire it.
	time.Sleep(50 * time.Millisecond)
	set := time.Now()
	tm := r.set(t, "s-told", 200*time.Millisecond, true)
	at := r.waitFired(t, tm.Message.ID, 10*time.Second)
	if at.Sub(set) < 150*time.Millisecond {
		t.Fatalf("timer due after 200ms fired after %v", at.Sub(set))
	}
}

// TestTimerServiceFindsTimersItWasNotToldOf: a timer set by another
// process (the service was not told) fires on the periodic store poll.
func TestTimerServiceFindsTimersItWasNotToldOf(t *testing.T) {
	r := newTimerRig(t, 100*time.Millisecond)
	tm := r.set(t, "s-foreign", 50*time.Millisecond, false)
	r.waitFired(t, tm.Message.ID, 10*time.Second)
}

func TestTimerWakeKeepsTheEarliestAndDropsThePast(t *testing.T) {
	w := newTimerWake()
	now := time.Now()
	w.add(now.Add(3 * time.Second))
	select {
	case <-w.kick:
	default:
		t.Fatal("first due time did not kick")
	}
	w.add(now.Add(5 * time.Second))
	select {
	case <-w.kick:
		t.Fatal("a later due time kicked")
	default:
	}
	w.add(now.Add(time.Second))
	select {
	case <-w.kick:
	default:
		t.Fatal("a new earliest due time did not kick")
	}
	if got, ok := w.next(now); !ok || !got.Equal(now.Add(time.Second)) {
		t.Fatalf("next = %v %v, want %v", got, ok, now.Add(time.Second))
	}
	if got, ok := w.next(now.Add(4 * time.Second)); !ok || !got.Equal(now.Add(5*time.Second)) {
		t.Fatalf("next after 4s = %v %v, want the 5s one", got, ok)
	}
	if _, ok := w.next(now.Add(time.Minute)); ok {
		t.Fatal("next after all are past reported one")
	}
}

// openRigParts opens a real embedded store in a temporary directory and
// an in-process transport of one partition, both closed when t ends.
func openRigParts(t *testing.T) (*embedded.Store, *inmem.Transport) {
	t.Helper()
	st, err := embedded.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	tr := inmem.New(inmem.WithPartitions(1))
	t.Cleanup(func() { _ = tr.Close() })
	return st, tr
}
