package engine_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/workflows"
)

// publishCounter counts the publishes of each message ID of one type.
type publishCounter struct {
	transport.Transport
	typ string
	mu  sync.Mutex
	n   map[string]int // publishes by message ID
	ids map[string]int // publishes by timer ID
}

func (p *publishCounter) Publish(ctx context.Context, e message.Envelope) error {
	err := p.Transport.Publish(ctx, e)
	if err == nil && e.Type == p.typ {
		p.mu.Lock()
		p.n[e.ID]++
		var tf workflows.TimerFired
		_ = json.Unmarshal(e.Payload, &tf)
		p.ids[tf.TimerID]++
		p.mu.Unlock()
	}
	return err
}

// TestTimerDueWhileDownFiresOnceAfterRestart proves issue 11 item 9 (I5):
// a saga's shipping step fails and schedules its retry on a durable timer
// due in 1s; the engine stops before it is due and stays down until after;
// a new engine on the same store fires the timer, and only then (no
// earlier retry from the saga's resume) does the step run its second and
// last attempt, once, fail, and the saga compensate. The resume sets the
// live timer again under the same timer ID (its firing may have been lost
// with the process), so the timer's message may be published twice, once
// from the old and once from the re-armed timer; the saga applies the
// first and finds the second no longer live, so the timer fires once.
func TestTimerDueWhileDownFiresOnceAfterRestart(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts testStore) {
		const delay = time.Second
		retry := workflows.RetryPolicy{MaxAttempts: 2, InitialInterval: delay, MaxInterval: delay, Multiplier: 1}
		newEngine := func(tr transport.Transport) (*engine.Engine, context.CancelFunc, chan error) {
			opts := ts.options(t)
			opts.AdminAddr, opts.Logger, opts.Transport = "127.0.0.1:0", quietLogger(), tr
			e := orders.RegisterWith(engine.New(opts), orders.WorkflowWithTimeout(retry, longTimeout))
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- e.Run(ctx) }()
			select {
			case <-e.Ready():
			case err := <-done:
				t.Fatalf("engine: %v", err)
			}
			return e, stop, done
		}
		first, stop, done := newEngine(nil)
		in, _ := json.Marshal(orders.Input{OrderID: "o-timer", SKU: "x", Qty: 1, Amount: 1, Address: orders.Unreachable})
		id, err := first.StartSaga(context.Background(), engine.StartRequest{Workflow: orders.WorkflowName, Input: in})
		if err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 20*time.Second, "the shipping retry to be scheduled", func() bool {
			s, err := first.GetSaga(context.Background(), id)
			return err == nil && len(stepEvents(s, "ship-order")) >= 2
		})
		stop()
		if err := <-done; err != nil {
			t.Fatalf("stop: %v", err)
		}
		stoppedAt := time.Now()
		time.Sleep(delay + 500*time.Millisecond) // the timer falls due while no engine runs

		inner := inmem.New(inmem.WithLogger(quietLogger()))
		t.Cleanup(func() { _ = inner.Close() })
		counter := &publishCounter{Transport: inner, typ: workflows.TypeTimerFired, n: map[string]int{}, ids: map[string]int{}}
		second, stop2, done2 := newEngine(counter)
		t.Cleanup(func() { stop2(); <-done2 })
		restartedAt := time.Now()
		s := waitSaga(t, second, id)
		if s.Status != workflows.StatusCompensated {
			t.Fatalf("status %s (%s), want compensated", s.Status, s.Error)
		}
		// The resume after the restart sets the live timer again under its
		// own ID (its firing may have been lost) and records that: the
		// retry timer if it comes first, the second attempt's timeout
		// timer if the retry fired first.
		var steps []string
		rearmed := 0
		for _, ev := range stepEvents(s, "ship-order") {
			if ev == workflows.EventTimerRearmed {
				rearmed++
				continue
			}
			steps = append(steps, ev)
		}
		want := []string{workflows.EventStepStarted, workflows.EventStepRetryScheduled, workflows.EventStepStarted, workflows.EventStepFailed}
		if !equalStrings(steps, want) || rearmed != 1 {
			t.Errorf("ship-order history %v, want %v and one %s", stepEvents(s, "ship-order"), want, workflows.EventTimerRearmed)
		}
		var secondStart time.Time
		n := 0
		for _, r := range s.History {
			if r.Step == "ship-order" && r.Event == workflows.EventStepStarted {
				if n++; n == 2 {
					secondStart = r.At
				}
			}
		}
		if secondStart.Before(restartedAt) {
			t.Errorf("second attempt at %v, before the restart at %v (stopped at %v)", secondStart, restartedAt, stoppedAt)
		}
		counter.mu.Lock()
		defer counter.mu.Unlock()
		for msgID, c := range counter.n {
			if c != 1 {
				t.Errorf("timer message %s published %d times, want once", msgID, c)
			}
		}
		if len(counter.ids) != 1 || len(counter.n) > 2 {
			t.Errorf("timers fired after the restart: %v (messages %v), want one timer, from at most two messages", counter.ids, counter.n)
		}
		t.Logf("timer firings published after the restart: %v", counter.ids)
		checkEffects(t, second.Store(), "o-timer", shippingFailedEffects)
	})
}
