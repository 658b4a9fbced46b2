package workflows_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/workflows"
)

// These tests play the step kinds beyond command and local through the
// pure machine: parallel branches, waits, delays, conditionals, child
// sagas, the deadline, and cancellation of each.

// --- harness helpers for several things in flight ------------------------

// branchPending returns the command in flight of the branch named step.
func (h *harness) branchPending(step string) message.Envelope {
	h.t.Helper()
	steps := h.wf.Steps()
	for _, b := range h.inst.Branches {
		if steps[b.Step].Name == step && b.Pending != nil {
			return *b.Pending
		}
	}
	h.t.Fatalf("%sbranch %q has no command in flight (branches %+v)", h.playing, step, h.inst.Branches)
	return message.Envelope{}
}

// replyCmd answers cmd (any awaited command) with body.
func (h *harness) replyCmd(cmd message.Envelope, body any) (workflows.Decision, error) {
	h.t.Helper()
	env, decoded := h.replyTo(cmd, body)
	h.advance(time.Second)
	return workflows.OnReply(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), env, decoded)
}

func (h *harness) replyBranch(step string, body any) workflows.Decision {
	h.t.Helper()
	dec, err := h.replyCmd(h.branchPending(step), body)
	return h.apply("reply to branch "+step, dec, err)
}

// fireID advances the clock to timer id and delivers it.
func (h *harness) fireID(id string) workflows.Decision {
	h.t.Helper()
	tm, ok := h.timers[id]
	if !ok {
		h.t.Fatalf("timer %q was never asked for", id)
	}
	if tm.DueAt.After(h.now) {
		h.now = tm.DueAt
	}
	dec, err := workflows.OnTimer(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), id)
	return h.apply("timer "+id, dec, err)
}

func (h *harness) branchTimer(step string) string {
	h.t.Helper()
	steps := h.wf.Steps()
	for _, b := range h.inst.Branches {
		if steps[b.Step].Name == step && b.TimerID != "" {
			return b.TimerID
		}
	}
	h.t.Fatalf("branch %q has no live timer", step)
	return ""
}

func (h *harness) signal(name string, payload string) workflows.Decision {
	h.t.Helper()
	h.advance(time.Second)
	h.ids++
	dec, err := workflows.OnSignal(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), fmt.Sprintf("sig-%d", h.ids), workflows.SignalSaga{Name: name, Payload: json.RawMessage(payload)})
	return h.apply("signal "+name, dec, err)
}

func (h *harness) event(typ, payload string) (workflows.Decision, error) {
	h.t.Helper()
	h.advance(time.Second)
	h.ids++
	ev := message.Envelope{ID: fmt.Sprintf("ev-%d", h.ids), Kind: message.KindEvent, Type: typ, Key: "o-1", SagaID: sagaID, Payload: json.RawMessage(payload)}
	return workflows.OnEvent(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), "routed-"+ev.ID, ev)
}

func wantErrIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

// --- parallel --------------------------------------------------------------

func parallelOrder(mode workflows.ParallelMode) *workflows.Definition[orderInput, orderState] {
	return workflows.New(wfName, 1, initOrder).
		Send("reserve-stock", reserveStep()).
		Parallel("pay-and-ship", mode,
			workflows.Branch[orderState]{Name: "charge-payment", Step: chargeStep()},
			workflows.Branch[orderState]{Name: "ship-order", Step: compensable(shipStep())},
		).
		Do("award-points", pointsStep())
}

func TestParallelAllSendsEveryBranchAtOnceAndWaitsForAll(t *testing.T) {
	for _, persist := range []bool{false, true} {
		t.Run(fmt.Sprintf("persist=%v", persist), func(t *testing.T) {
			h := newHarness(t, parallelOrder(workflows.All))
			h.persist = persist
			h.start(order1)
			h.play(reserved)
			h.wantSent(sentReserve, sentCharge, sentShip)
			if len(h.inst.Branches) != 2 {
				t.Fatalf("branches = %+v, want 2 in flight", h.inst.Branches)
			}
			h.replyBranch("ship-order", &orderShipped{TrackingNo: "trk-1"})
			h.wantStatus(workflows.StatusRunning)
			if h.inst.Step != 1 {
				t.Fatalf("the parallel step moved on with a branch in flight: step %d", h.inst.Step)
			}
			h.replyBranch("charge-payment", &paymentCharged{ChargeID: "ch-1"})
			h.wantStatus(workflows.StatusCompleted)
			if s := h.orderState(); s.ChargeID != "ch-1" || s.TrackingNo != "trk-1" || s.Points != 4 {
				t.Errorf("state = %+v, want both branches' replies applied and points awarded", s)
			}
			h.wantHistory(
				"saga.started",
				"step.started reserve-stock", "step.succeeded reserve-stock",
				"step.started pay-and-ship", "step.started charge-payment", "step.started ship-order",
				"step.succeeded ship-order", "step.succeeded charge-payment", "step.succeeded pay-and-ship",
				"step.succeeded award-points", "saga.completed",
			)
		})
	}
}

func TestParallelAllBranchFailureCompensatesTheSiblingThatSucceeded(t *testing.T) {
	h := newHarness(t, parallelOrder(workflows.All))
	h.start(order1)
	h.play(reserved)
	h.replyBranch("ship-order", &orderShipped{TrackingNo: "trk-1"})
	h.replyBranch("charge-payment", &message.Failure{Reason: "card declined"})
	// The sibling that succeeded is undone first, then the step before.
	h.play(accepted(), accepted())
	h.wantStatus(workflows.StatusCompensated)
	h.wantSent(sentReserve, sentCharge, sentShip, sentCancelShipment, sentRelease)
	if !strings.Contains(h.inst.Error, `branch "charge-payment" failed: card declined`) {
		t.Errorf("error = %q, want it to name the failed branch", h.inst.Error)
	}
}

func TestParallelAllFailureAbandonsTheSiblingInFlightAndCompensatesIt(t *testing.T) {
	h := newHarness(t, parallelOrder(workflows.All))
	h.start(order1)
	h.play(reserved)
	ship := h.branchPending("ship-order")
	shipTimer := h.branchTimer("ship-order")
	h.replyBranch("charge-payment", &message.Failure{Reason: "card declined"})
	if !contains(h.cancelled, shipTimer) {
		t.Errorf("the abandoned branch's timeout %s was not cancelled (cancelled %v)", shipTimer, h.cancelled)
	}
	// The shipment may have gone out: it is compensated at once.
	h.play(accepted(), accepted())
	h.wantStatus(workflows.StatusCompensated)
	h.wantSent(sentReserve, sentCharge, sentShip, sentCancelShipment, sentRelease)
	// Its late reply finds nobody waiting.
	_, err := h.replyCmd(ship, &orderShipped{TrackingNo: "late"})
	wantErrIs(t, "late reply of an abandoned branch", err, workflows.ErrTerminal)
	if s := h.orderState(); s.TrackingNo != "" {
		t.Errorf("a late reply was applied: %+v", s)
	}
}

func TestParallelBranchRetriesOnItsOwnTimer(t *testing.T) {
	ship := withRetry(compensable(shipStep()), workflows.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Second})
	wf := workflows.New(wfName, 1, initOrder).Parallel("both", workflows.All,
		workflows.Branch[orderState]{Name: "charge-payment", Step: chargeStep()},
		workflows.Branch[orderState]{Name: "ship-order", Step: ship})
	h := newHarness(t, wf)
	h.persist = true
	h.start(order1)
	h.fireID(h.branchTimer("ship-order")) // timeout: uncertain, retried
	h.fireID(h.branchTimer("ship-order")) // retry delay over: sent again
	h.replyBranch("ship-order", &orderShipped{TrackingNo: "trk-2"})
	h.replyBranch("charge-payment", &paymentCharged{ChargeID: "ch-1"})
	h.wantStatus(workflows.StatusCompleted)
	h.wantSent(sentCharge, sentShip, sentShip)
}

func TestFirstWinsCompensatesALateLoser(t *testing.T) {
	h := newHarness(t, parallelOrder(workflows.FirstWins))
	h.start(order1)
	h.play(reserved)
	ship := h.branchPending("ship-order")
	h.replyBranch("charge-payment", &paymentCharged{ChargeID: "ch-1"})
	// The loser is abandoned; its command may have been applied, so its
	// compensation goes out now, and the step waits for it.
	h.wantSent(sentReserve, sentCharge, sentShip, sentCancelShipment)
	if h.inst.Step != 1 {
		t.Fatalf("first-wins moved on before its loser was settled: step %d", h.inst.Step)
	}
	_, err := h.replyCmd(ship, &orderShipped{TrackingNo: "late"})
	wantErrIs(t, "late reply of the loser", err, workflows.ErrStale)
	h.replyBranch("ship-order", &message.Accepted{})
	h.wantStatus(workflows.StatusCompleted)
	if s := h.orderState(); s.ChargeID != "ch-1" || s.TrackingNo != "" {
		t.Errorf("state = %+v, want the winner's reply only", s)
	}
	h.wantHistory(
		"saga.started",
		"step.started reserve-stock", "step.succeeded reserve-stock",
		"step.started pay-and-ship", "step.started charge-payment", "step.started ship-order",
		"step.succeeded charge-payment", "step.abandoned ship-order", "compensation.started ship-order",
		"compensation.succeeded ship-order", "step.succeeded pay-and-ship",
		"step.succeeded award-points", "saga.completed",
	)
}

func TestFirstWinsLoserThatFailedIsNotCompensated(t *testing.T) {
	h := newHarness(t, parallelOrder(workflows.FirstWins))
	h.start(order1)
	h.play(reserved)
	h.replyBranch("ship-order", &message.Failure{Reason: "no carrier"})
	h.wantStatus(workflows.StatusRunning)
	h.replyBranch("charge-payment", &paymentCharged{ChargeID: "ch-1"})
	h.wantStatus(workflows.StatusCompleted)
	h.wantSent(sentReserve, sentCharge, sentShip)
}

func TestFirstWinsFailsWhenEveryBranchFails(t *testing.T) {
	h := newHarness(t, parallelOrder(workflows.FirstWins))
	h.start(order1)
	h.play(reserved)
	h.replyBranch("ship-order", &message.Failure{Reason: "no carrier"})
	h.fireID(h.branchTimer("charge-payment")) // timed out: may have been charged
	h.play(accepted(), accepted())
	h.wantStatus(workflows.StatusCompensated)
	h.wantSent(sentReserve, sentCharge, sentShip, sentRefund, sentRelease)
}

func TestFirstWinsLoserCompensationThatKeepsFailingParksTheSaga(t *testing.T) {
	ship := compensable(shipStep())
	ship.CompensationRetry = workflows.RetryPolicy{MaxAttempts: 1}
	wf := workflows.New(wfName, 1, initOrder).Send("reserve-stock", reserveStep()).Parallel("p", workflows.FirstWins,
		workflows.Branch[orderState]{Name: "charge-payment", Step: chargeStep()},
		workflows.Branch[orderState]{Name: "ship-order", Step: ship})
	h := newHarness(t, wf)
	h.start(order1)
	h.play(reserved)
	h.replyBranch("charge-payment", &paymentCharged{ChargeID: "ch-1"})
	h.replyBranch("ship-order", &message.Failure{Reason: "cannot cancel"})
	h.wantStatus(workflows.StatusNeedsAttention)
	if len(h.inst.Branches) != 0 || h.inst.Pending != nil {
		t.Fatalf("a parked saga still has work in flight: %+v", h.inst)
	}
	// An operator's retry undoes the loser first, then the whole saga.
	dec, err := workflows.Retry(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), "fixed")
	h.apply("retry", dec, err)
	h.play(accepted(), accepted(), accepted())
	h.wantStatus(workflows.StatusCompensated)
	h.wantSent(sentReserve, sentCharge, sentShip, sentCancelShipment, sentCancelShipment, sentRefund, sentRelease)
}

func TestCancelMidParallelCompensatesEveryBranchAndTheStepsBefore(t *testing.T) {
	h := newHarness(t, parallelOrder(workflows.All))
	h.start(order1)
	h.play(reserved)
	h.replyBranch("charge-payment", &paymentCharged{ChargeID: "ch-1"})
	ship := h.branchPending("ship-order")
	h.cancel("customer changed their mind")
	if len(h.inst.Branches) != 0 {
		t.Fatalf("branches still in flight after cancel: %+v", h.inst.Branches)
	}
	h.play(accepted(), accepted(), accepted())
	h.wantStatus(workflows.StatusCancelled)
	// The branch in flight first, then the one that succeeded, then the step before.
	h.wantSent(sentReserve, sentCharge, sentShip, sentCancelShipment, sentRefund, sentRelease)
	_, err := h.replyCmd(ship, &orderShipped{TrackingNo: "late"})
	wantErrIs(t, "late reply after cancel", err, workflows.ErrTerminal)
}

func TestResumeResendsBranchCommandsAndRearmsTheirTimers(t *testing.T) {
	h := newHarness(t, parallelOrder(workflows.All).Deadline(time.Hour))
	h.persist = true
	h.start(order1)
	h.play(reserved)
	before := len(h.sent)
	dec := h.resume()
	if got := len(dec.Send); got != 2 || h.sent[before].ID != h.inst.Branches[0].Pending.ID {
		t.Fatalf("resume sent %d messages, want both branch commands again with their IDs", got)
	}
	ids := map[string]bool{}
	for _, tm := range dec.Timers {
		ids[tm.ID] = true
	}
	if !ids[h.inst.Branches[0].TimerID] || !ids[h.inst.Branches[1].TimerID] || !ids[h.inst.DeadlineTimerID] || len(ids) != 3 {
		t.Errorf("resume re-armed %v, want both branch timers and the deadline", ids)
	}
}

// --- waits -----------------------------------------------------------------

type approval struct {
	By string `json:"by"`
}

func approvalOrder(timeout time.Duration) *workflows.Definition[orderInput, orderState] {
	return placeOrder().Await("manager-approval", workflows.SignalStep[orderState]{
		Signal: "approved", Timeout: timeout,
		OnSignal: workflows.Payload(func(s *orderState, a *approval) error {
			if a.By == "" {
				return errors.New("approval names nobody")
			}
			s.Log = append(s.Log, "approved by "+a.By)
			return nil
		}),
	}).Send("ship-order", shipStep())
}

func TestAwaitSignalConsumesTheNamedSignal(t *testing.T) {
	h := newHarness(t, approvalOrder(time.Hour))
	h.persist = true
	h.start(order1)
	h.play(reserved, charged)
	if h.inst.Wait == nil || h.inst.Wait.Name != "approved" || h.inst.TimerPurpose != workflows.TimerTimeout {
		t.Fatalf("want a wait for %q with a timeout, have %+v / %q", "approved", h.inst.Wait, h.inst.TimerPurpose)
	}
	h.signal("rejected", `{}`) // not the one awaited: recorded only
	if h.inst.Wait == nil {
		t.Fatal("another signal ended the wait")
	}
	timer := h.inst.TimerID
	h.signal("approved", `{"by":"ann"}`)
	if !contains(h.cancelled, timer) {
		t.Errorf("the wait's timeout %s was not cancelled", timer)
	}
	h.play(shipped)
	h.wantStatus(workflows.StatusCompleted)
	if s := h.orderState(); len(s.Log) != 1 || s.Log[0] != "approved by ann" {
		t.Errorf("state log = %v, want the signal's payload applied", s.Log)
	}
}

func TestAwaitSignalTimeoutCompensates(t *testing.T) {
	h := newHarness(t, approvalOrder(time.Hour))
	h.start(order1)
	h.play(reserved, charged)
	h.fire(workflows.TimerTimeout)
	h.play(accepted(), accepted())
	h.wantStatus(workflows.StatusCompensated)
	h.wantSent(sentReserve, sentCharge, sentRefund, sentRelease)
	if !strings.Contains(h.inst.Error, `no signal "approved" within 1h0m0s`) {
		t.Errorf("error = %q", h.inst.Error)
	}
	// A signal after the timeout no longer applies.
	if _, err := workflows.OnSignal(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), "sig-late", workflows.SignalSaga{Name: "approved"}); !errors.Is(err, workflows.ErrTerminal) {
		t.Errorf("late signal: err = %v, want ErrTerminal", err)
	}
}

func TestAwaitSignalHandlerErrorFailsTheStep(t *testing.T) {
	h := newHarness(t, approvalOrder(0))
	h.start(order1)
	h.play(reserved, charged)
	if h.inst.TimerID != "" {
		t.Fatalf("a wait without timeout set timer %q", h.inst.TimerID)
	}
	h.signal("approved", `{}`)
	h.play(accepted(), accepted())
	h.wantStatus(workflows.StatusCompensated)
	if !strings.Contains(h.inst.Error, "approval names nobody") {
		t.Errorf("error = %q", h.inst.Error)
	}
}

func TestAnEarlySignalIsKeptUntilItsStepWaits(t *testing.T) {
	h := newHarness(t, approvalOrder(time.Hour))
	h.persist = true
	h.start(order1)
	h.signal("approved", `{"by":"bob"}`)
	if len(h.inst.Inbox) != 1 {
		t.Fatalf("inbox = %+v, want the early signal kept", h.inst.Inbox)
	}
	h.play(reserved, charged)
	if h.inst.Wait != nil || len(h.inst.Inbox) != 0 {
		t.Fatalf("the kept signal was not consumed: wait %+v inbox %+v", h.inst.Wait, h.inst.Inbox)
	}
	h.play(shipped)
	h.wantStatus(workflows.StatusCompleted)
	if s := h.orderState(); len(s.Log) != 1 || s.Log[0] != "approved by bob" {
		t.Errorf("log = %v", s.Log)
	}
}

type stockArrived struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

const typeStockArrived = "inventory.StockArrived.v1"

func eventOrder() *workflows.Definition[orderInput, orderState] {
	return workflows.New(wfName, 1, initOrder).
		Send("reserve-stock", reserveStep()).
		AwaitEvent("stock-arrives", workflows.EventStep[orderState]{
			Event: typeStockArrived, Timeout: time.Hour,
			Match: workflows.Matching(func(s *orderState, e *stockArrived) bool { return e.SKU == s.SKU }),
			OnEvent: workflows.Payload(func(s *orderState, e *stockArrived) error {
				s.Log = append(s.Log, fmt.Sprintf("arrived %d", e.Qty))
				return nil
			}),
		}).
		Send("charge-payment", chargeStep())
}

func TestAwaitEventAppliesTheMatchingEventOnly(t *testing.T) {
	h := newHarness(t, eventOrder())
	h.persist = true
	h.start(order1)
	h.play(reserved)
	dec, err := h.event(typeStockArrived, `{"sku":"pen","qty":1}`)
	h.apply("other sku", dec, err)
	if h.inst.Wait == nil {
		t.Fatal("an event the predicate refused ended the wait")
	}
	dec, err = h.event(typeStockArrived, `{"sku":"book","qty":5}`)
	h.apply("book", dec, err)
	h.play(charged)
	h.wantStatus(workflows.StatusCompleted)
	if s := h.orderState(); len(s.Log) != 1 || s.Log[0] != "arrived 5" {
		t.Errorf("log = %v", s.Log)
	}
	_, err = h.event(typeStockArrived, `{"sku":"book","qty":6}`)
	wantErrIs(t, "event for a finished saga", err, workflows.ErrTerminal)
}

func TestAnEventNoStepWaitsForIsStale(t *testing.T) {
	h := newHarness(t, eventOrder())
	h.start(order1)
	before := snapshot(t, h.inst)
	_, err := h.event("inventory.Other.v1", `{}`)
	wantErrIs(t, "unknown event", err, workflows.ErrStale)
	h.play(reserved)
	h.fire(workflows.TimerTimeout) // the wait times out: compensating
	_, err = h.event(typeStockArrived, `{"sku":"book"}`)
	wantErrIs(t, "event after the wait timed out", err, workflows.ErrStale)
	if before == snapshot(t, h.inst) {
		t.Fatal("the saga did not move at all")
	}
	h.play(accepted())
	h.wantStatus(workflows.StatusCompensated)
}

// --- delay -----------------------------------------------------------------

func TestDelayWaitsForItsTimer(t *testing.T) {
	h := newHarness(t, placeOrder().Delay("cool-off", 10*time.Minute).Send("ship-order", shipStep()))
	h.persist = true
	h.start(order1)
	h.play(reserved, charged)
	if h.inst.TimerPurpose != workflows.TimerDelay || !h.inst.TimerDue.Equal(h.now.Add(10*time.Minute)) {
		t.Fatalf("timer = %q due %v, want a delay due in 10m", h.inst.TimerPurpose, h.inst.TimerDue)
	}
	// The engine restarts: the delay is re-armed with its due time.
	dec := h.resume()
	if len(dec.Timers) != 1 || dec.Timers[0].ID != h.inst.TimerID {
		t.Fatalf("resume re-armed %+v", dec.Timers)
	}
	h.fire(workflows.TimerDelay)
	h.play(shipped)
	h.wantStatus(workflows.StatusCompleted)
}

func TestCancelDuringADelayOrWaitCompensatesTheStepsBefore(t *testing.T) {
	for name, wf := range map[string]workflows.Workflow{
		"delay": placeOrder().Delay("cool-off", time.Hour),
		"wait":  approvalOrder(time.Hour),
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, wf)
			h.start(order1)
			h.play(reserved, charged)
			timer := h.inst.TimerID
			h.cancel("stop")
			if !contains(h.cancelled, timer) || h.inst.Wait != nil {
				t.Fatalf("cancel left the %s in place (timer %s, wait %+v)", name, timer, h.inst.Wait)
			}
			h.play(accepted(), accepted())
			h.wantStatus(workflows.StatusCancelled)
			h.wantSent(sentReserve, sentCharge, sentRefund, sentRelease)
		})
	}
}

// --- conditional -----------------------------------------------------------

func conditionalOrder() *workflows.Definition[orderInput, orderState] {
	return workflows.New(wfName, 1, initOrder).
		Send("reserve-stock", reserveStep()).
		If("big-order", func(s *orderState) bool { return s.Amount >= 100 },
			workflows.Steps[orderState]().Send("charge-payment", chargeStep()).Send("ship-order", compensable(shipStep())),
			workflows.Steps[orderState]().Send("ship-cod", compensable(shipStep())),
		).
		Do("award-points", workflows.LocalStep[orderState]{Run: pointsStep().Run, Compensate: pointsStep().Run}).
		Send("final", withRetry(shipStep(), workflows.RetryPolicy{}))
}

func TestIfTakesOneBranchAndCompensationUndoesExactlyItsSteps(t *testing.T) {
	t.Run("then", func(t *testing.T) {
		h := newHarness(t, conditionalOrder())
		h.persist = true
		h.start(orderInput{OrderID: "o-1", SKU: "book", Amount: 150})
		h.play(reserved, charged, shipped, rejected("no"), accepted(), accepted(), accepted())
		h.wantStatus(workflows.StatusCompensated)
		h.wantSent(sentReserve, sentCharge, sentShip, sentShip, sentCancelShipment, sentRefund, sentRelease)
		wantLines(t, "branch", branchLines(h.history), []string{"step.branch_taken big-order then"})
	})
	t.Run("else", func(t *testing.T) {
		h := newHarness(t, conditionalOrder())
		h.start(orderInput{OrderID: "o-1", SKU: "book", Amount: 20})
		h.play(reserved, shipped, rejected("no"), accepted(), accepted())
		h.wantStatus(workflows.StatusCompensated)
		h.wantSent(sentReserve, sentShip, sentShip, sentCancelShipment, sentRelease)
		wantLines(t, "branch", branchLines(h.history), []string{"step.branch_taken big-order else"})
	})
	t.Run("when without else", func(t *testing.T) {
		wf := workflows.New(wfName, 1, initOrder).
			When("gift", func(s *orderState) bool { return s.Qty > 5 }, workflows.Steps[orderState]().Send("wrap", shipStep())).
			Send("charge-payment", chargeStep())
		h := newHarness(t, wf)
		h.start(order1)
		h.play(charged)
		h.wantStatus(workflows.StatusCompleted)
		h.wantSent(sentCharge)
	})
}

func branchLines(recs []workflows.Record) []string {
	var out []string
	for _, r := range recs {
		if r.Event == workflows.EventBranchTaken {
			out = append(out, r.Event+" "+r.Step+" "+r.Detail)
		}
	}
	return out
}

// --- child sagas -----------------------------------------------------------

type childOut struct {
	Label string `json:"label"`
}

func childOrder() *workflows.Definition[orderInput, orderState] {
	return workflows.New(wfName, 1, initOrder).
		Send("reserve-stock", reserveStep()).
		Child("print-label", workflows.ChildStep[orderState]{
			Workflow: "labels.Print",
			Input:    func(s *orderState) (any, error) { return map[string]string{"order_id": s.OrderID}, nil },
			OnDone: func(s *orderState, state json.RawMessage) error {
				var out childOut
				if err := json.Unmarshal(state, &out); err != nil {
					return err
				}
				s.TrackingNo = out.Label
				return nil
			},
		}).
		Send("charge-payment", chargeStep())
}

func TestChildSagaIsStartedOnceAndItsEndDrivesTheStep(t *testing.T) {
	h := newHarness(t, childOrder())
	h.persist = true
	h.start(order1)
	h.play(reserved)
	start := h.pending()
	childID := workflows.ChildID(sagaID, "print-label")
	if start.Destination != sagaQueue || start.Key != childID || start.Type != workflows.TypeStartChild {
		t.Fatalf("start = %s %s %s, want %s to %s keyed %s", start.Destination, start.Type, start.Key, workflows.TypeStartChild, sagaQueue, childID)
	}
	if sc := h.body(start).(*workflows.StartChild); sc.Workflow != "labels.Print" || sc.ParentID != sagaID || string(sc.Input) != `{"order_id":"o-1"}` {
		t.Errorf("start child = %+v", sc)
	}
	if workflows.ChildID(sagaID, "print-label") != childID || workflows.ChildID("saga-2", "print-label") == childID {
		t.Error("child IDs are not derived from parent and step")
	}
	h.reply(&workflows.ChildEnded{SagaID: childID, Status: workflows.StatusCompleted, State: json.RawMessage(`{"label":"L-9"}`)})
	h.play(rejected("declined"))
	// Compensating the child step asks the child to undo itself.
	comp := h.pending()
	if comp.Type != workflows.TypeCompensate || comp.Key != childID {
		t.Fatalf("compensation = %s to %s, want %s to the child", comp.Type, comp.Key, workflows.TypeCompensate)
	}
	h.reply(&workflows.ChildEnded{SagaID: childID, Status: workflows.StatusCancelled})
	h.play(accepted())
	h.wantStatus(workflows.StatusCompensated)
	if s := h.orderState(); s.TrackingNo != "L-9" {
		t.Errorf("state = %+v, want the child's state folded in", s)
	}
}

func TestChildSagaFailureFailsTheStep(t *testing.T) {
	h := newHarness(t, childOrder())
	h.start(order1)
	h.play(reserved)
	h.reply(&workflows.ChildEnded{SagaID: "c", Status: workflows.StatusCompensated, Error: "printer jammed"})
	h.play(accepted())
	h.wantStatus(workflows.StatusCompensated)
	h.wantSent(sentReserve, "sagas "+workflows.TypeStartChild+" "+workflows.ChildID(sagaID, "print-label"), sentRelease)
	if !strings.Contains(h.inst.Error, "printer jammed") {
		t.Errorf("error = %q", h.inst.Error)
	}
}

func TestChildReportsItsEndAndUndoesItselfWhenAsked(t *testing.T) {
	// The child side: a saga started by a parent.
	h := newHarness(t, placeOrder())
	data, _ := json.Marshal(order1)
	dec, err := workflows.StartAsChild(h.wf, h.env(), sagaID, corrID, data, workflows.ParentRef{ID: "parent-1", ReplyTo: "start-1"})
	h.apply("start child", dec, err)
	h.resume()
	h.play(reserved, charged)
	h.wantStatus(workflows.StatusCompleted)
	end := h.sent[len(h.sent)-1]
	if end.Kind != message.KindReply || end.Type != workflows.TypeChildEnded || end.Key != "parent-1" || end.CausationID != "start-1" {
		t.Fatalf("end report = %+v, want a %s reply to start-1 keyed by the parent", end, workflows.TypeChildEnded)
	}
	if ce := h.body(end).(*workflows.ChildEnded); ce.Status != workflows.StatusCompleted || !strings.Contains(string(ce.State), `"charge_id":"ch-1"`) {
		t.Errorf("end = %+v", ce)
	}
	dec, err = workflows.CompensateRequested(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), "comp-1", "")
	h.apply("compensate", dec, err)
	h.play(accepted(), accepted())
	h.wantStatus(workflows.StatusCancelled)
	end = h.sent[len(h.sent)-1]
	if end.Type != workflows.TypeChildEnded || end.CausationID != "comp-1" || h.body(end).(*workflows.ChildEnded).Status != workflows.StatusCancelled {
		t.Fatalf("second end report = %+v, want cancelled in answer to comp-1", end)
	}
	// Asked again (a resent request): it answers at once.
	dec, err = workflows.CompensateRequested(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), "comp-2", "")
	h.apply("compensate again", dec, err)
	if len(dec.Send) != 1 || dec.Send[0].CausationID != "comp-2" {
		t.Errorf("repeat request sent %+v", dec.Send)
	}
	// A saga no parent started refuses.
	plain := newHarness(t, placeOrder())
	plain.start(order1)
	_, err = workflows.CompensateRequested(plain.ctx, plain.wf, plain.env(), plain.inst, plain.cachedState(), "x", "")
	wantErrIs(t, "compensate a top-level saga", err, workflows.ErrNotChild)
}

// --- deadline --------------------------------------------------------------

func TestDeadlineAbandonsTheRunningStepAndCompensates(t *testing.T) {
	h := newHarness(t, approvalOrder(0).Deadline(2*time.Hour))
	h.persist = true
	h.start(order1)
	if h.inst.DeadlineTimerID == "" || !h.inst.DeadlineDue.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("deadline timer %q due %v, want one due at start+2h", h.inst.DeadlineTimerID, h.inst.DeadlineDue)
	}
	h.play(reserved, charged)
	h.fireID(h.inst.DeadlineTimerID)
	if h.inst.Status != workflows.StatusCompensating || h.inst.Wait != nil {
		t.Fatalf("after the deadline: %s, wait %+v", h.inst.Status, h.inst.Wait)
	}
	h.play(accepted(), accepted())
	h.wantStatus(workflows.StatusCompensated)
	h.wantSent(sentReserve, sentCharge, sentRefund, sentRelease)
	if !strings.Contains(h.inst.Error, "deadline of 2h0m0s passed") {
		t.Errorf("error = %q", h.inst.Error)
	}
}

func TestDeadlineTimerIsCancelledWhenTheSagaEnds(t *testing.T) {
	h := newHarness(t, placeOrder().Deadline(time.Hour))
	h.start(order1)
	deadline := h.inst.DeadlineTimerID
	h.play(reserved, charged)
	h.wantStatus(workflows.StatusCompleted)
	if !contains(h.cancelled, deadline) || h.inst.DeadlineTimerID != "" {
		t.Errorf("deadline timer %s not cancelled at completion (cancelled %v)", deadline, h.cancelled)
	}
	_, err := workflows.OnTimer(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), deadline)
	wantErrIs(t, "deadline after completion", err, workflows.ErrStale)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestTheMachineNeverWritesIntoTheCallersInstance(t *testing.T) {
	h := newHarness(t, parallelOrder(workflows.FirstWins).Deadline(time.Hour))
	h.start(order1)
	h.play(reserved)
	inputs := map[string]func() (workflows.Decision, error){
		"branch reply": func() (workflows.Decision, error) {
			return h.replyCmd(h.branchPending("charge-payment"), &paymentCharged{ChargeID: "ch-1"})
		},
		"branch timer": func() (workflows.Decision, error) {
			return workflows.OnTimer(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), h.branchTimer("ship-order"))
		},
		"deadline": func() (workflows.Decision, error) {
			return workflows.OnTimer(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), h.inst.DeadlineTimerID)
		},
		"cancel": func() (workflows.Decision, error) {
			return workflows.Cancel(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), "x")
		},
	}
	for name, f := range inputs {
		before := snapshot(t, h.inst)
		if _, err := f(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if after := snapshot(t, h.inst); after != before {
			t.Errorf("%s changed the caller's instance:\nbefore %s\nafter  %s", name, before, after)
		}
	}
}

func TestParallelAndWaitsSurviveAPersistRoundTripAtEveryStep(t *testing.T) {
	scripts := map[string]func(h *harness){
		"first wins with a late loser": func(h *harness) {
			h.play(reserved)
			h.replyBranch("charge-payment", &paymentCharged{ChargeID: "ch-1"})
			h.replyBranch("ship-order", &message.Accepted{})
		},
		"all with a failing branch": func(h *harness) {
			h.play(reserved)
			h.replyBranch("ship-order", &orderShipped{TrackingNo: "trk-1"})
			h.fireID(h.branchTimer("charge-payment"))
			h.play(accepted(), accepted(), accepted())
		},
	}
	for name, script := range scripts {
		t.Run(name, func(t *testing.T) {
			mode := workflows.FirstWins
			if strings.HasPrefix(name, "all") {
				mode = workflows.All
			}
			run := func(persist bool) *harness {
				h := newHarness(t, parallelOrder(mode).Deadline(time.Hour))
				h.persist = persist
				h.start(order1)
				script(h)
				return h
			}
			cached, persisted := run(false), run(true)
			wantLines(t, "history", persisted.events(), cached.events())
			if a, b := snapshot(t, persisted.inst), snapshot(t, cached.inst); a != b {
				t.Errorf("final instances differ:\npersisted %s\ncached    %s", a, b)
			}
			if !cached.inst.Status.Terminal() {
				t.Errorf("script left the saga %s:\n%s", cached.inst.Status, strings.Join(cached.events(), "\n"))
			}
		})
	}
}
