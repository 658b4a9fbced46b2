package workflows_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/workflows"
)

// circuitHarness drives the harness with an Env whose CircuitOpen reports
// the services in open as open until the time given.
type circuitHarness struct {
	*harness
	open map[string]time.Time
}

func (c *circuitHarness) env() workflows.Env {
	env := c.harness.env()
	env.CircuitOpen = func(service string) (time.Time, bool) {
		at, ok := c.open[service]
		return at, ok
	}
	return env
}

func (c *circuitHarness) start(in any) {
	c.t.Helper()
	dec, err := workflows.Start(c.wf, c.env(), sagaID, corrID, []byte(fmt.Sprintf(`{"order_id":%q,"sku":"book","qty":1,"amount":40}`, in)))
	c.apply("start", dec, err)
	dec, err = workflows.Resume(c.ctx, c.wf, c.env(), c.inst, c.cachedState())
	c.apply("resume", dec, err)
}

func (c *circuitHarness) fire() {
	c.t.Helper()
	tm, ok := c.timers[c.inst.TimerID]
	if !ok || c.inst.TimerPurpose != workflows.TimerRetry {
		c.t.Fatalf("want a live retry timer, have %q %q", c.inst.TimerID, c.inst.TimerPurpose)
	}
	c.now = tm.DueAt
	dec, err := workflows.OnTimer(c.ctx, c.wf, c.env(), c.inst, c.cachedState(), tm.ID)
	c.apply("timer", dec, err)
}

func (c *circuitHarness) reply(body any) {
	c.t.Helper()
	env, decoded := c.replyTo(c.pending(), body)
	c.advance(time.Second)
	dec, err := workflows.OnReply(c.ctx, c.wf, c.env(), c.inst, c.cachedState(), env, decoded)
	c.apply("reply", dec, err)
}

func (c *circuitHarness) cancelSaga() {
	c.t.Helper()
	dec, err := workflows.Cancel(c.ctx, c.wf, c.env(), c.inst, c.cachedState(), "stop")
	c.apply("cancel", dec, err)
}

func (c *circuitHarness) wantPaused(step string, attempt int, until time.Time) {
	c.t.Helper()
	last := c.history[len(c.history)-1]
	if last.Event != workflows.EventStepPaused || last.Step != step {
		c.t.Fatalf("last record %s %s, want %s %s", last.Event, last.Step, workflows.EventStepPaused, step)
	}
	if c.inst.Pending != nil || c.inst.TimerPurpose != workflows.TimerRetry || !c.inst.TimerDue.Equal(until) {
		c.t.Fatalf("paused saga: pending %v, timer %q due %v; want no command and a retry timer due %v", c.inst.Pending, c.inst.TimerPurpose, c.inst.TimerDue, until)
	}
	if c.inst.Attempt != attempt {
		c.t.Fatalf("attempt %d while paused, want %d (a pause burns no attempt)", c.inst.Attempt, attempt)
	}
}

// TestCircuitOpenPausesWithoutBurningAttempts: while the circuit to a
// step's service is open the step sends nothing, records a pause and
// waits for a retry timer set for when the circuit lets requests through,
// any number of times, with its attempt counter untouched; when the
// circuit closes the next firing sends. Compensations pause the same way.
func TestCircuitOpenPausesWithoutBurningAttempts(t *testing.T) {
	charge := chargeStep()
	charge.Retry = workflows.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Second}
	wf := workflows.New(wfName, 1, initOrder).Send("reserve-stock", reserveStep()).Send("charge-payment", charge)
	c := &circuitHarness{harness: newHarness(t, wf), open: map[string]time.Time{}}

	until := t0.Add(30 * time.Second)
	c.open["inventory"] = until
	c.start("o-1")
	c.wantPaused("reserve-stock", 0, until)
	for i := range 5 {
		until = until.Add(30 * time.Second)
		c.open["inventory"] = until
		c.fire()
		c.wantPaused("reserve-stock", 0, until)
		if len(c.sent) != 0 {
			t.Fatalf("pause %d: sent %v while the circuit is open", i, c.sentLines())
		}
	}
	delete(c.open, "inventory")
	c.fire()
	c.wantSent("inventory " + typeReserve + " o-1")
	c.reply(&stockReserved{ReservationID: "r-1"})

	// A retryable failure uses an attempt; the pause that follows does not.
	c.reply(&message.Failure{Reason: "busy", Retryable: true})
	until = c.now.Add(time.Minute)
	c.open["payments"] = until
	c.fire()
	c.wantPaused("charge-payment", 1, until)
	// A circuit that says "open until a moment ago" still pauses, briefly.
	c.open["payments"] = c.now.Add(-time.Second)
	c.fire()
	c.wantPaused("charge-payment", 1, c.now.Add(10*time.Millisecond))
	delete(c.open, "payments")
	c.fire()
	if c.inst.Attempt != 2 || c.inst.Pending == nil {
		t.Fatalf("attempt %d, pending %v: want the second attempt sent", c.inst.Attempt, c.inst.Pending)
	}

	// Cancelled now, the compensations pause while their circuit is open.
	c.open["payments"] = c.now.Add(time.Minute)
	c.cancelSaga()
	c.wantPaused("charge-payment", 0, c.now.Add(time.Minute))
	delete(c.open, "payments")
	c.fire()
	c.reply(&message.Accepted{})
	c.reply(&message.Accepted{})
	c.wantStatus(workflows.StatusCancelled)
	c.wantHistory(
		"saga.started", "step.paused reserve-stock",
		"step.paused reserve-stock", "step.paused reserve-stock", "step.paused reserve-stock", "step.paused reserve-stock", "step.paused reserve-stock",
		"step.started reserve-stock", "step.succeeded reserve-stock",
		"step.started charge-payment", "step.retry_scheduled charge-payment",
		"step.paused charge-payment", "step.paused charge-payment", "step.started charge-payment",
		"saga.cancel_requested", "step.paused charge-payment",
		"compensation.started charge-payment", "compensation.succeeded charge-payment",
		"compensation.started reserve-stock", "compensation.succeeded reserve-stock", "saga.cancelled",
	)
}
