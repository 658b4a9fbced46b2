package workflows_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/workflows"
)

// sequenceOrder runs, in parallel under All, the branch charge-payment
// then ship-order (a sequence of two commands) and the branch
// reserve-stock.
func sequenceOrder() *workflows.Definition[orderInput, orderState] {
	return workflows.New(wfName, 1, initOrder).
		Parallel("pay-ship-reserve", workflows.All,
			workflows.Branch[orderState]{Name: "charge-payment", Step: chargeStep(), Then: []workflows.Branch[orderState]{
				{Name: "ship-order", Step: compensable(shipStep())},
			}},
			workflows.Branch[orderState]{Name: "reserve-stock", Step: reserveStep()},
		).
		Do("award-points", pointsStep())
}

func TestParallelBranchThatIsASequence(t *testing.T) {
	cases := []struct {
		name        string
		play        func(h *harness)
		wantStatus  workflows.Status
		wantSent    []string
		wantHistory []string
	}{{
		name: "the sequence runs step by step beside its sibling, and the step waits for its end",
		play: func(h *harness) {
			h.wantSent(sentCharge, sentReserve)
			h.replyBranch("charge-payment", &paymentCharged{ChargeID: "ch-1"})
			h.wantSent(sentCharge, sentReserve, sentShip)
			h.replyBranch("reserve-stock", &stockReserved{ReservationID: "r-1"})
			if h.inst.Step != 0 || len(h.inst.Branches) != 2 {
				h.t.Fatalf("the parallel step moved on while a sequence runs: step %d, branches %+v", h.inst.Step, h.inst.Branches)
			}
			h.replyBranch("ship-order", &orderShipped{TrackingNo: "trk-1"})
			if s := h.orderState(); s.ChargeID != "ch-1" || s.TrackingNo != "trk-1" || s.ReservationID != "r-1" || s.Points != 4 {
				h.t.Errorf("state = %+v, want every reply applied and points awarded", s)
			}
		},
		wantStatus: workflows.StatusCompleted,
		wantSent:   []string{sentCharge, sentReserve, sentShip},
		wantHistory: []string{
			"saga.started", "step.started pay-ship-reserve", "step.started charge-payment", "step.started reserve-stock",
			"step.succeeded charge-payment", "step.started ship-order", "step.succeeded reserve-stock",
			"step.succeeded ship-order", "step.succeeded pay-ship-reserve", "step.succeeded award-points", "saga.completed",
		},
	}, {
		name: "a later step of the sequence fails: every completed step is undone, in reverse order",
		play: func(h *harness) {
			h.replyBranch("charge-payment", &paymentCharged{ChargeID: "ch-1"})
			h.replyBranch("reserve-stock", &stockReserved{ReservationID: "r-1"})
			h.replyBranch("ship-order", &message.Failure{Reason: "no carrier"})
			h.play(accepted(), accepted())
			if !strings.Contains(h.inst.Error, `branch "ship-order" failed: no carrier`) {
				h.t.Errorf("error = %q, want it to name the failed step of the branch", h.inst.Error)
			}
		},
		wantStatus: workflows.StatusCompensated,
		wantSent:   []string{sentCharge, sentReserve, sentShip, sentRelease, sentRefund},
		wantHistory: []string{
			"saga.started", "step.started pay-ship-reserve", "step.started charge-payment", "step.started reserve-stock",
			"step.succeeded charge-payment", "step.started ship-order", "step.succeeded reserve-stock",
			"step.failed ship-order",
			"compensation.started reserve-stock", "compensation.succeeded reserve-stock",
			"compensation.started charge-payment", "compensation.succeeded charge-payment", "saga.compensated",
		},
	}, {
		name: "the sibling fails while the sequence is on its second step: that step, in flight, is undone too",
		play: func(h *harness) {
			h.replyBranch("charge-payment", &paymentCharged{ChargeID: "ch-1"})
			h.replyBranch("reserve-stock", &message.Failure{Reason: "out of stock"})
			h.play(accepted(), accepted())
		},
		wantStatus: workflows.StatusCompensated,
		wantSent:   []string{sentCharge, sentReserve, sentShip, sentCancelShipment, sentRefund},
		wantHistory: []string{
			"saga.started", "step.started pay-ship-reserve", "step.started charge-payment", "step.started reserve-stock",
			"step.succeeded charge-payment", "step.started ship-order", "step.failed reserve-stock", "step.abandoned ship-order",
			"compensation.started ship-order", "compensation.succeeded ship-order",
			"compensation.started charge-payment", "compensation.succeeded charge-payment", "saga.compensated",
		},
	}}
	for _, c := range cases {
		for _, persist := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/persist=%v", c.name, persist), func(t *testing.T) {
				h := newHarness(t, sequenceOrder())
				h.persist = persist
				h.start(order1)
				c.play(h)
				h.wantStatus(c.wantStatus)
				h.wantSent(c.wantSent...)
				h.wantHistory(c.wantHistory...)
			})
		}
	}
}

func TestBranchSequencesAreCheckedAndDrawn(t *testing.T) {
	seq := func(mode workflows.ParallelMode, then ...workflows.Branch[orderState]) *workflows.Definition[orderInput, orderState] {
		return workflows.New(wfName, 1, initOrder).Parallel("p", mode,
			workflows.Branch[orderState]{Name: "charge-payment", Step: chargeStep(), Then: then},
			workflows.Branch[orderState]{Name: "reserve-stock", Step: reserveStep()})
	}
	ship := workflows.Branch[orderState]{Name: "ship-order", Step: shipStep()}
	for _, c := range []struct {
		name string
		wf   *workflows.Definition[orderInput, orderState]
		want string
	}{
		{"first wins", seq(workflows.FirstWins, ship), `branch "charge-payment" has steps after it (Then): only a parallel step with mode all may`},
		{"nested", seq(workflows.All, workflows.Branch[orderState]{Name: "ship-order", Step: shipStep(), Then: []workflows.Branch[orderState]{{Name: "x", Step: shipStep()}}}),
			`"ship-order": a step of a branch's Then has a Then of its own`},
		{"name reused", seq(workflows.All, workflows.Branch[orderState]{Name: "reserve-stock", Step: shipStep()}), `name already used`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.wf.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, c.want)
			}
		})
	}

	d := workflows.Mermaid(seq(workflows.All, ship))
	for _, want := range []string{"s1 --> s2", "s2 --> s4", "s4 --> j1", "s1 --> s3", "s3 --> j1", "j1 --> completed"} {
		if !strings.Contains(d, "    "+want+"\n") {
			t.Errorf("diagram lacks %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, "s2 --> j1") {
		t.Errorf("the first step of a sequence goes straight to the join:\n%s", d)
	}
}

// TestCircuitOpenPausesALaterStepOfABranchSequence: the next step of a
// sequence pauses on its branch's flight like a first step does.
func TestCircuitOpenPausesALaterStepOfABranchSequence(t *testing.T) {
	c := &circuitHarness{harness: newHarness(t, sequenceOrder()), open: map[string]time.Time{}}
	c.start("o-1")
	until := c.now.Add(time.Minute)
	c.open["shipping"] = until
	c.replyBranch("charge-payment", &paymentCharged{ChargeID: "ch-1"})
	c.wantBranchPaused("ship-order", 0, until)
	c.replyBranch("reserve-stock", &stockReserved{ReservationID: "r-1"})
	delete(c.open, "shipping")
	c.fireBranch("ship-order")
	c.replyBranch("ship-order", &orderShipped{TrackingNo: "trk-1"})
	c.wantStatus(workflows.StatusCompleted)
	c.wantSent(sentCharge, sentReserve, sentShip)
}
