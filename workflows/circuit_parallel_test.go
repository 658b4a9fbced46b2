package workflows_test

import (
	"slices"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/workflows"
)

// These tests play the circuit breaker's pause (Env.CircuitOpen) on the
// per-flight parts of the machine: a Parallel branch and the
// compensation of a branch pause on their own timer, burn no attempt,
// and go out when the circuit closes.

// branch returns the branch of the running Parallel step named step.
func (c *circuitHarness) branch(step string) workflows.BranchState {
	c.t.Helper()
	steps := c.wf.Steps()
	for _, b := range c.inst.Branches {
		if steps[b.Step].Name == step {
			return b
		}
	}
	c.t.Fatalf("no branch %q in flight (branches %+v)", step, c.inst.Branches)
	return workflows.BranchState{}
}

// fireBranch delivers the live retry timer of the branch named step.
func (c *circuitHarness) fireBranch(step string) {
	c.t.Helper()
	b := c.branch(step)
	if b.TimerID == "" || b.TimerPurpose != workflows.TimerRetry {
		c.t.Fatalf("branch %q: want a live retry timer, have %q %q", step, b.TimerID, b.TimerPurpose)
	}
	c.now = b.TimerDue
	dec, err := workflows.OnTimer(c.ctx, c.wf, c.env(), c.inst, c.cachedState(), b.TimerID)
	c.apply("branch timer "+step, dec, err)
}

// replyBranch answers the command in flight of the branch named step.
func (c *circuitHarness) replyBranch(step string, body any) {
	c.t.Helper()
	env, decoded := c.replyTo(c.branchPending(step), body)
	c.advance(time.Second)
	dec, err := workflows.OnReply(c.ctx, c.wf, c.env(), c.inst, c.cachedState(), env, decoded)
	c.apply("reply to branch "+step, dec, err)
}

// wantBranchPaused checks that the branch named step sends nothing, keeps
// attempt, and waits for a retry timer due at until, and that its last
// record is its pause.
func (c *circuitHarness) wantBranchPaused(step string, attempt int, until time.Time) {
	c.t.Helper()
	var last workflows.Record
	for _, r := range c.history {
		if r.Step == step {
			last = r
		}
	}
	if last.Event != workflows.EventStepPaused {
		c.t.Fatalf("last record of %s is %q, want %s", step, last.Event, workflows.EventStepPaused)
	}
	b := c.branch(step)
	if b.Pending != nil || b.TimerPurpose != workflows.TimerRetry || !b.TimerDue.Equal(until) {
		c.t.Fatalf("paused branch %q: pending %v, timer %q due %v; want no command and a retry timer due %v", step, b.Pending, b.TimerPurpose, b.TimerDue, until)
	}
	if b.Attempt != attempt {
		c.t.Fatalf("branch %q: attempt %d while paused, want %d (a pause burns no attempt)", step, b.Attempt, attempt)
	}
	if steps := c.wf.Steps(); c.inst.Step >= len(steps) || steps[c.inst.Step].Kind != workflows.KindParallel || c.inst.Status != workflows.StatusRunning {
		c.t.Fatalf("the Parallel step moved on (step %d, %s) with a paused branch", c.inst.Step, c.inst.Status)
	}
}

// sentTo counts the commands sent to service.
func (c *circuitHarness) sentTo(service string) int {
	n := 0
	for _, m := range c.sent {
		if m.Destination == service {
			n++
		}
	}
	return n
}

// circuitParallel is reserve-stock, then charge-payment and ship-order in
// parallel under mode. Forward attempts and compensation attempts are
// both limited to one: any attempt burnt by a pause fails the saga.
func circuitParallel(mode workflows.ParallelMode) *workflows.Definition[orderInput, orderState] {
	charge := chargeStep()
	charge.Retry = workflows.RetryPolicy{MaxAttempts: 1}
	ship := compensable(shipStep())
	ship.Retry = workflows.RetryPolicy{MaxAttempts: 1}
	ship.CompensationRetry = workflows.RetryPolicy{MaxAttempts: 1}
	return workflows.New(wfName, 1, initOrder).
		Send("reserve-stock", reserveStep()).
		Parallel("pay-and-ship", mode,
			workflows.Branch[orderState]{Name: "charge-payment", Step: charge},
			workflows.Branch[orderState]{Name: "ship-order", Step: ship},
		)
}

func TestCircuitOpenPausesParallelBranchesAndTheirCompensations(t *testing.T) {
	const pauses = 3
	cases := []struct {
		name string
		mode workflows.ParallelMode
		// play drives the saga from the moment reserve-stock succeeded.
		play        func(t *testing.T, c *circuitHarness)
		wantStatus  workflows.Status
		wantSent    []string
		wantHistory []string
	}{{
		// The branch to an open circuit pauses while its sibling runs;
		// the step waits for it and it goes out, first attempt, once the
		// circuit closes.
		name: "branch pauses until its circuit closes",
		mode: workflows.All,
		play: func(t *testing.T, c *circuitHarness) {
			until := c.now.Add(30 * time.Second)
			c.open["payments"] = until
			c.reply(&stockReserved{ReservationID: "r-1"})
			c.wantBranchPaused("charge-payment", 0, until)
			if c.branch("ship-order").Pending == nil {
				t.Fatal("the sibling of a paused branch was not sent")
			}
			c.replyBranch("ship-order", &orderShipped{TrackingNo: "trk-1"})
			for range pauses {
				until = until.Add(30 * time.Second)
				c.open["payments"] = until
				c.fireBranch("charge-payment")
				c.wantBranchPaused("charge-payment", 0, until)
			}
			if n := c.sentTo("payments"); n != 0 {
				t.Fatalf("%d commands sent to payments while its circuit is open", n)
			}
			delete(c.open, "payments")
			c.fireBranch("charge-payment")
			if b := c.branch("charge-payment"); b.Pending == nil || b.Attempt != 1 {
				t.Fatalf("circuit closed: branch pending %v attempt %d, want the first attempt sent", b.Pending, b.Attempt)
			}
			c.replyBranch("charge-payment", &paymentCharged{ChargeID: "ch-1"})
		},
		wantStatus: workflows.StatusCompleted,
		wantSent:   []string{sentReserve, sentShip, sentCharge},
		wantHistory: []string{
			"saga.started", "step.started reserve-stock", "step.succeeded reserve-stock",
			"step.started pay-and-ship", "step.paused charge-payment", "step.started ship-order",
			"step.succeeded ship-order",
			"step.paused charge-payment", "step.paused charge-payment", "step.paused charge-payment",
			"step.started charge-payment", "step.succeeded charge-payment", "step.succeeded pay-and-ship",
			"saga.completed",
		},
	}, {
		// Both branches to open circuits: nothing is sent, and each
		// resumes on its own timer.
		name: "every branch paused",
		mode: workflows.All,
		play: func(t *testing.T, c *circuitHarness) {
			until := c.now.Add(time.Minute)
			c.open["payments"], c.open["shipping"] = until, until.Add(time.Minute)
			c.reply(&stockReserved{ReservationID: "r-1"})
			if c.inst.Pending != nil || c.sentTo("payments")+c.sentTo("shipping") != 0 {
				t.Fatalf("sent %v with both circuits open", c.sentLines())
			}
			c.wantBranchPaused("ship-order", 0, until.Add(time.Minute))
			delete(c.open, "payments")
			c.fireBranch("charge-payment")
			c.replyBranch("charge-payment", &paymentCharged{ChargeID: "ch-1"})
			c.wantBranchPaused("ship-order", 0, until.Add(time.Minute))
			delete(c.open, "shipping")
			c.fireBranch("ship-order")
			c.replyBranch("ship-order", &orderShipped{TrackingNo: "trk-1"})
		},
		wantStatus: workflows.StatusCompleted,
		wantSent:   []string{sentReserve, sentCharge, sentShip},
		wantHistory: []string{
			"saga.started", "step.started reserve-stock", "step.succeeded reserve-stock",
			"step.started pay-and-ship", "step.paused charge-payment", "step.paused ship-order",
			"step.started charge-payment", "step.succeeded charge-payment",
			"step.started ship-order", "step.succeeded ship-order", "step.succeeded pay-and-ship",
			"saga.completed",
		},
	}, {
		// A first-wins loser that may have shipped is compensated on its
		// own flight: that compensation pauses while the circuit to
		// shipping is open, with its one attempt kept, and the step
		// waits for it.
		name: "compensation of a losing branch pauses",
		mode: workflows.FirstWins,
		play: func(t *testing.T, c *circuitHarness) {
			c.reply(&stockReserved{ReservationID: "r-1"})
			until := c.now.Add(time.Minute)
			c.open["shipping"] = until
			c.replyBranch("charge-payment", &paymentCharged{ChargeID: "ch-1"})
			c.wantBranchPaused("ship-order", 0, until)
			if b := c.branch("ship-order"); b.Status != workflows.BranchCompensating {
				t.Fatalf("loser is %s, want compensating", b.Status)
			}
			for range pauses {
				until = until.Add(time.Minute)
				c.open["shipping"] = until
				c.fireBranch("ship-order")
				c.wantBranchPaused("ship-order", 0, until)
			}
			delete(c.open, "shipping")
			c.fireBranch("ship-order")
			c.replyBranch("ship-order", &message.Accepted{})
		},
		wantStatus: workflows.StatusCompleted,
		wantSent:   []string{sentReserve, sentCharge, sentShip, sentCancelShipment},
		wantHistory: []string{
			"saga.started", "step.started reserve-stock", "step.succeeded reserve-stock",
			"step.started pay-and-ship", "step.started charge-payment", "step.started ship-order",
			"step.succeeded charge-payment", "step.abandoned ship-order", "step.paused ship-order",
			"step.paused ship-order", "step.paused ship-order", "step.paused ship-order",
			"compensation.started ship-order", "compensation.succeeded ship-order", "step.succeeded pay-and-ship",
			"saga.completed",
		},
	}, {
		// A branch that succeeded is undone, after its sibling failed,
		// by the saga's own compensation: that pauses while the circuit
		// is open, with its one attempt kept.
		name: "compensation of a branch that succeeded pauses",
		mode: workflows.All,
		play: func(t *testing.T, c *circuitHarness) {
			c.reply(&stockReserved{ReservationID: "r-1"})
			c.replyBranch("ship-order", &orderShipped{TrackingNo: "trk-1"})
			until := c.now.Add(time.Minute)
			c.open["shipping"] = until
			c.replyBranch("charge-payment", &message.Failure{Reason: "card declined"})
			c.wantPaused("ship-order", 0, until)
			for range pauses {
				until = until.Add(time.Minute)
				c.open["shipping"] = until
				c.fire()
				c.wantPaused("ship-order", 0, until)
			}
			delete(c.open, "shipping")
			c.fire()
			c.reply(&message.Accepted{})
			c.reply(&message.Accepted{})
		},
		wantStatus: workflows.StatusCompensated,
		wantSent:   []string{sentReserve, sentCharge, sentShip, sentCancelShipment, sentRelease},
		wantHistory: []string{
			"saga.started", "step.started reserve-stock", "step.succeeded reserve-stock",
			"step.started pay-and-ship", "step.started charge-payment", "step.started ship-order",
			"step.succeeded ship-order", "step.failed charge-payment", "step.paused ship-order",
			"step.paused ship-order", "step.paused ship-order", "step.paused ship-order",
			"compensation.started ship-order", "compensation.succeeded ship-order",
			"compensation.started reserve-stock", "compensation.succeeded reserve-stock", "saga.compensated",
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, persist := range []bool{false, true} {
				c := &circuitHarness{harness: newHarness(t, circuitParallel(tc.mode)), open: map[string]time.Time{}}
				c.persist = persist
				c.start("o-1")
				tc.play(t, c)
				c.wantStatus(tc.wantStatus)
				got := c.sentLines()
				slices.Sort(got)
				want := slices.Clone(tc.wantSent)
				slices.Sort(want)
				wantLines(t, "sent", got, want)
				c.wantHistory(tc.wantHistory...)
			}
		})
	}
}
