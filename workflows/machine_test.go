package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/workflows"
)

// Reply outcomes used across the tests.
var (
	reserved = ok(&stockReserved{ReservationID: "r-1"})
	charged  = ok(&paymentCharged{ChargeID: "ch-1"})
	shipped  = ok(&orderShipped{TrackingNo: "trk-1"})
)

// Sent-command lines ("destination type key") of the order saga.
const (
	sentReserve        = "inventory " + typeReserve + " o-1"
	sentCharge         = "payments " + typeCharge + " o-1"
	sentShip           = "shipping " + typeShip + " o-1"
	sentRelease        = "inventory " + typeRelease + " o-1"
	sentRefund         = "payments " + typeRefund + " o-1"
	sentCancelShipment = "shipping " + typeCancelShipment + " o-1"
)

func TestStartCreatesARunningInstanceWithoutTakingAStep(t *testing.T) {
	h := newHarness(t, placeOrder())
	input, err := json.Marshal(order1)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := workflows.Start(h.wf, h.env(), sagaID, corrID, input)
	if err != nil {
		t.Fatal(err)
	}
	in := dec.Instance
	if in.ID != sagaID || in.Workflow != wfName || in.Version != 1 || in.Status != workflows.StatusRunning ||
		in.CorrelationID != corrID || in.Step != 0 || in.Attempt != 0 || in.Pending != nil || in.TimerID != "" ||
		!in.CreatedAt.Equal(t0) || !in.UpdatedAt.Equal(t0) {
		t.Errorf("instance = %+v", in)
	}
	if string(in.Input) != string(input) {
		t.Errorf("input = %s, want %s", in.Input, input)
	}
	input[0] = 'X' // the instance keeps its own copy
	if in.Input[0] == 'X' {
		t.Error("instance shares the caller's input buffer")
	}
	var st orderState
	if err := json.Unmarshal(in.State, &st); err != nil {
		t.Fatal(err)
	}
	if want := (orderState{OrderID: "o-1", SKU: "book", Qty: 2, Amount: 40}); !reflect.DeepEqual(st, want) {
		t.Errorf("state = %+v, want %+v", st, want)
	}
	if got, isState := dec.State.(*orderState); !isState || !reflect.DeepEqual(*got, st) {
		t.Errorf("decision state = %#v, want the decoded state", dec.State)
	}
	wantLines(t, "records", eventLines(dec.Records), []string{workflows.EventStarted})
	if len(dec.Send) != 0 || len(dec.Timers) != 0 {
		t.Errorf("start sent %d messages and set %d timers; the first step runs on Resume", len(dec.Send), len(dec.Timers))
	}
}

func TestStartRejectsInputTheWorkflowCannotUse(t *testing.T) {
	cases := []struct {
		name, input string
		mentions    []string
	}{
		{"not JSON", `{"order_id":`, []string{wfName, "not a valid"}},
		{"wrong field type", `{"order_id": 7}`, []string{wfName, "order_id"}},
		{"init refuses it", `{"sku":"book"}`, []string{wfName, "init", "order_id is required"}},
		{"empty input reaches init as the zero value", ``, []string{"order_id is required"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, placeOrder())
			_, err := workflows.Start(h.wf, h.env(), sagaID, corrID, []byte(c.input))
			if err == nil {
				t.Fatal("Start accepted the input")
			}
			for _, m := range c.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func TestHappyPathSendsEachCommandOnceAndCompletes(t *testing.T) {
	wf := placeOrder().Send("ship-order", shipStep()).Do("award-points", pointsStep())
	h := newHarness(t, wf)
	h.start(order1)
	h.play(reserved, charged, shipped)

	h.wantStatus(workflows.StatusCompleted)
	h.wantHistory(
		"saga.started",
		"step.started reserve-stock", "step.succeeded reserve-stock",
		"step.started charge-payment", "step.succeeded charge-payment",
		"step.started ship-order", "step.succeeded ship-order",
		"step.succeeded award-points",
		"saga.completed",
	)
	h.wantSent(sentReserve, sentCharge, sentShip)

	ids := map[string]bool{}
	for _, m := range h.sent {
		if m.Kind != message.KindCommand || m.Source != engineName || m.SagaID != sagaID || m.CorrelationID != corrID {
			t.Errorf("command %s: kind %s, source %q, saga %q, correlation %q", m.Type, m.Kind, m.Source, m.SagaID, m.CorrelationID)
		}
		if got := m.Header(message.HeaderReplyTo); got != sagaQueue {
			t.Errorf("command %s: reply-to %q, want %q", m.Type, got, sagaQueue)
		}
		if ids[m.ID] {
			t.Errorf("command ID %s used twice", m.ID)
		}
		ids[m.ID] = true
	}
	if got := h.body(h.sent[0]).(*reserveStock); *got != (reserveStock{OrderID: "o-1", SKU: "book", Qty: 2}) {
		t.Errorf("reserve command = %+v", *got)
	}
	if got := h.body(h.sent[1]).(*chargePayment); *got != (chargePayment{OrderID: "o-1", Amount: 40}) {
		t.Errorf("charge command = %+v", *got)
	}

	want := orderState{OrderID: "o-1", SKU: "book", Qty: 2, Amount: 40, ReservationID: "r-1", ChargeID: "ch-1", TrackingNo: "trk-1", Points: 4}
	if got := h.orderState(); !reflect.DeepEqual(got, want) {
		t.Errorf("persisted state = %+v, want %+v", got, want)
	}
	if h.inst.Pending != nil || h.inst.TimerID != "" || h.inst.Error != "" {
		t.Errorf("completed instance still has pending %v, timer %q, error %q", h.inst.Pending, h.inst.TimerID, h.inst.Error)
	}
	// Each command had a timeout timer, due Timeout after it was sent and
	// cancelled when its reply came.
	if len(h.timers) != 3 || len(h.cancelled) != 3 {
		t.Fatalf("timers set %d, cancelled %v; want one per command", len(h.timers), h.cancelled)
	}
	for i, id := range h.cancelled {
		tm := h.timers[id]
		if !tm.DueAt.Equal(h.sent[i].OccurredAt.Add(5 * time.Second)) {
			t.Errorf("timeout of command %d due at %v, want 5s after %v", i+1, tm.DueAt, h.sent[i].OccurredAt)
		}
	}
	for i, r := range h.history {
		if r.Event == workflows.EventStepStarted && r.Attempt != 1 {
			t.Errorf("record %d %s %s: attempt %d, want 1", i, r.Event, r.Step, r.Attempt)
		}
		if i > 0 && r.At.Before(h.history[i-1].At) {
			t.Errorf("record %d is older than the one before it", i)
		}
	}
}

func TestRetryableFailuresUseTheBudgetThenCompensateInReverse(t *testing.T) {
	cases := []struct {
		name       string
		retry      workflows.RetryPolicy
		rnd        float64
		wantDelays []time.Duration
	}{
		{"exponential", workflows.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: 3},
			0.5, []time.Duration{time.Second, 3 * time.Second}},
		{"capped", workflows.RetryPolicy{MaxAttempts: 4, InitialInterval: time.Second, MaxInterval: 2 * time.Second, Multiplier: 2},
			0.5, []time.Duration{time.Second, 2 * time.Second, 2 * time.Second}},
		{"jittered low", workflows.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Second, Multiplier: 2, Jitter: 0.5},
			0, []time.Duration{500 * time.Millisecond, time.Second}},
		{"defaults", workflows.RetryPolicy{MaxAttempts: 2}, 0.5, []time.Duration{100 * time.Millisecond}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ship := shipStep()
			ship.Retry = c.retry
			h := newHarness(t, placeOrder().Send("ship-order", ship))
			h.rnd = c.rnd
			h.start(order1)
			h.play(reserved, charged)
			for range c.retry.MaxAttempts {
				h.play(retryable("carrier down"))
			}
			h.wantStatus(workflows.StatusCompensating)
			h.play(accepted(), accepted())

			h.wantStatus(workflows.StatusCompensated)
			var want []string
			want = append(want, "saga.started",
				"step.started reserve-stock", "step.succeeded reserve-stock",
				"step.started charge-payment", "step.succeeded charge-payment")
			for range c.retry.MaxAttempts - 1 {
				want = append(want, "step.started ship-order", "step.retry_scheduled ship-order")
			}
			want = append(want, "step.started ship-order", "step.failed ship-order",
				"compensation.started charge-payment", "compensation.succeeded charge-payment",
				"compensation.started reserve-stock", "compensation.succeeded reserve-stock",
				"saga.compensated")
			h.wantHistory(want...)

			sent := []string{sentReserve, sentCharge}
			for range c.retry.MaxAttempts {
				sent = append(sent, sentShip)
			}
			h.wantSent(append(sent, sentRefund, sentRelease)...)
			if !slices.Equal(h.retryDelays, c.wantDelays) {
				t.Errorf("retry delays = %v, want %v", h.retryDelays, c.wantDelays)
			}
			shipIDs := map[string]bool{}
			for _, m := range h.sent[2 : 2+c.retry.MaxAttempts] {
				shipIDs[m.ID] = true
			}
			if len(shipIDs) != c.retry.MaxAttempts {
				t.Errorf("%d ship attempts used %d distinct command IDs", c.retry.MaxAttempts, len(shipIDs))
			}
			n := len(h.sent)
			if got := h.body(h.sent[n-2]).(*refundPayment); got.ChargeID != "ch-1" {
				t.Errorf("refund = %+v, want the charge from the reply", *got)
			}
			if got := h.body(h.sent[n-1]).(*releaseStock); got.ReservationID != "r-1" {
				t.Errorf("release = %+v, want the reservation from the reply", *got)
			}
			if !strings.Contains(h.inst.Error, `step "ship-order" failed`) || !strings.Contains(h.inst.Error, "carrier down") {
				t.Errorf("error = %q, want it to name the step and the reason", h.inst.Error)
			}
			for _, r := range h.history {
				if r.Event == workflows.EventStepFailed && r.Attempt != c.retry.MaxAttempts {
					t.Errorf("step failed at attempt %d, want %d", r.Attempt, c.retry.MaxAttempts)
				}
				if r.Event == workflows.EventCompensated && r.Detail != h.inst.Error {
					t.Errorf("compensated record says %q, want the saga's error %q", r.Detail, h.inst.Error)
				}
			}
		})
	}
}

func TestNonRetryableFailureCompensatesAtOnceAndRecordsStepsWithoutCompensation(t *testing.T) {
	failingPoints := pointsStep()
	failingPoints.Run = func(context.Context, *orderState) error {
		return workflows.Permanent(errors.New("points service gone"))
	}
	cases := []struct {
		name     string
		wf       workflows.Workflow
		script   []outcome
		wantHist []string
		wantSent []string
		wantErr  string
	}{
		{
			name: "a local step without compensation",
			wf: workflows.New(wfName, 1, initOrder).
				Send("reserve-stock", reserveStep()).
				Do("award-points", pointsStep()).
				Send("charge-payment", withRetry(chargeStep(), workflows.RetryPolicy{MaxAttempts: 5})),
			script: []outcome{reserved, rejected("card declined"), accepted()},
			wantHist: []string{
				"saga.started",
				"step.started reserve-stock", "step.succeeded reserve-stock",
				"step.succeeded award-points",
				"step.started charge-payment", "step.failed charge-payment",
				"compensation.none award-points",
				"compensation.started reserve-stock", "compensation.succeeded reserve-stock",
				"saga.compensated",
			},
			wantSent: []string{sentReserve, sentCharge, sentRelease},
			wantErr:  "card declined",
		},
		{
			name:   "a command step without compensation",
			wf:     placeOrder().Send("ship-order", shipStep()).Do("award-points", failingPoints),
			script: []outcome{reserved, charged, shipped, accepted(), accepted()},
			wantHist: []string{
				"saga.started",
				"step.started reserve-stock", "step.succeeded reserve-stock",
				"step.started charge-payment", "step.succeeded charge-payment",
				"step.started ship-order", "step.succeeded ship-order",
				"step.failed award-points",
				"compensation.none ship-order",
				"compensation.started charge-payment", "compensation.succeeded charge-payment",
				"compensation.started reserve-stock", "compensation.succeeded reserve-stock",
				"saga.compensated",
			},
			wantSent: []string{sentReserve, sentCharge, sentShip, sentRefund, sentRelease},
			wantErr:  "points service gone",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.wf)
			h.start(order1)
			h.play(c.script...)
			h.wantStatus(workflows.StatusCompensated)
			h.wantHistory(c.wantHist...)
			h.wantSent(c.wantSent...)
			if len(h.retryDelays) != 0 {
				t.Errorf("a non-retryable failure scheduled retries after %v", h.retryDelays)
			}
			if !strings.Contains(h.inst.Error, c.wantErr) {
				t.Errorf("error = %q, want it to mention %q", h.inst.Error, c.wantErr)
			}
		})
	}
}

func withRetry(c workflows.CommandStep[orderState], p workflows.RetryPolicy) workflows.CommandStep[orderState] {
	c.Retry = p
	return c
}

func TestTimeoutIsARetryableFailureWithUnknownOutcome(t *testing.T) {
	twice := workflows.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Second}
	cases := []struct {
		name       string
		ship       workflows.CommandStep[orderState]
		script     []outcome
		wantStatus workflows.Status
		wantHist   []string // from the first ship attempt on
		wantSent   []string // from the first ship attempt on
	}{
		{
			name:       "a late reply is retried and can still succeed",
			ship:       withRetry(compensable(shipStep()), twice),
			script:     []outcome{timedOut(), shipped},
			wantStatus: workflows.StatusCompleted,
			wantHist: []string{
				"step.started ship-order", "step.retry_scheduled ship-order",
				"step.started ship-order", "step.succeeded ship-order",
				"saga.completed",
			},
			wantSent: []string{sentShip, sentShip},
		},
		{
			name:       "a compensable step that times out for good is compensated",
			ship:       withRetry(compensable(shipStep()), twice),
			script:     []outcome{timedOut(), timedOut(), accepted(), accepted(), accepted()},
			wantStatus: workflows.StatusCompensated,
			wantHist: []string{
				"step.started ship-order", "step.retry_scheduled ship-order",
				"step.started ship-order", "step.failed ship-order",
				"compensation.started ship-order", "compensation.succeeded ship-order",
				"compensation.started charge-payment", "compensation.succeeded charge-payment",
				"compensation.started reserve-stock", "compensation.succeeded reserve-stock",
				"saga.compensated",
			},
			wantSent: []string{sentShip, sentShip, sentCancelShipment, sentRefund, sentRelease},
		},
		{
			name:       "a step without compensation that times out cannot be undone",
			ship:       withRetry(shipStep(), twice),
			script:     []outcome{timedOut(), timedOut(), accepted(), accepted()},
			wantStatus: workflows.StatusCompensated,
			wantHist: []string{
				"step.started ship-order", "step.retry_scheduled ship-order",
				"step.started ship-order", "step.failed ship-order",
				"compensation.started charge-payment", "compensation.succeeded charge-payment",
				"compensation.started reserve-stock", "compensation.succeeded reserve-stock",
				"saga.compensated",
			},
			wantSent: []string{sentShip, sentShip, sentRefund, sentRelease},
		},
		{
			// The first attempt may have been applied even though the
			// second was refused: the step is compensated.
			name:       "a timed-out attempt followed by a refusal is compensated",
			ship:       withRetry(compensable(shipStep()), twice),
			script:     []outcome{timedOut(), rejected("address unknown"), accepted(), accepted(), accepted()},
			wantStatus: workflows.StatusCompensated,
			wantHist: []string{
				"step.started ship-order", "step.retry_scheduled ship-order",
				"step.started ship-order", "step.failed ship-order",
				"compensation.started ship-order", "compensation.succeeded ship-order",
				"compensation.started charge-payment", "compensation.succeeded charge-payment",
				"compensation.started reserve-stock", "compensation.succeeded reserve-stock",
				"saga.compensated",
			},
			wantSent: []string{sentShip, sentShip, sentCancelShipment, sentRefund, sentRelease},
		},
		{
			name:       "a refusal alone is not compensated",
			ship:       withRetry(compensable(shipStep()), twice),
			script:     []outcome{retryable("busy"), rejected("address unknown"), accepted(), accepted()},
			wantStatus: workflows.StatusCompensated,
			wantHist: []string{
				"step.started ship-order", "step.retry_scheduled ship-order",
				"step.started ship-order", "step.failed ship-order",
				"compensation.started charge-payment", "compensation.succeeded charge-payment",
				"compensation.started reserve-stock", "compensation.succeeded reserve-stock",
				"saga.compensated",
			},
			wantSent: []string{sentShip, sentShip, sentRefund, sentRelease},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, placeOrder().Send("ship-order", c.ship))
			h.start(order1)
			h.play(reserved, charged)
			// The records and commands from the first ship attempt on.
			hist0, sent0 := len(h.history)-1, len(h.sent)-1
			shipAt := h.now
			timeoutID := h.inst.TimerID
			if tm := h.timers[timeoutID]; h.inst.TimerPurpose != workflows.TimerTimeout || !tm.DueAt.Equal(shipAt.Add(5*time.Second)) {
				t.Fatalf("ship timer %q (%s) due at %v, want a timeout 5s after %v", timeoutID, h.inst.TimerPurpose, tm.DueAt, shipAt)
			}
			h.play(c.script...)
			h.wantStatus(c.wantStatus)
			wantLines(t, "history", h.events()[hist0:], c.wantHist)
			wantLines(t, "sent", h.sentLines()[sent0:], c.wantSent)
			for _, r := range h.history[hist0:] {
				if r.Event == workflows.EventStepRetryScheduled && strings.Contains(c.name, "late reply") && !strings.Contains(r.Detail, "no reply within 5s") {
					t.Errorf("retry record says %q, want it to name the timeout", r.Detail)
				}
			}
		})
	}
}

// Once a timed-out step has succeeded, the next step starts with a clean
// slate: its refusal does not make it look applied.
func TestATimeoutDoesNotCarryOverToTheNextStep(t *testing.T) {
	h := newHarness(t, workflows.New(wfName, 1, initOrder).
		Send("reserve-stock", withRetry(reserveStep(), workflows.RetryPolicy{MaxAttempts: 2})).
		Send("charge-payment", chargeStep()))
	h.start(order1)
	h.play(timedOut(), reserved, rejected("card declined"), accepted())
	h.wantStatus(workflows.StatusCompensated)
	h.wantSent(sentReserve, sentReserve, sentCharge, sentRelease)
}

func TestStaleInputIsRefusedAndChangesNothing(t *testing.T) {
	twice := workflows.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Second}
	retryingReserve := func() workflows.Workflow {
		return workflows.New(wfName, 1, initOrder).Send("reserve-stock", withRetry(reserveStep(), twice)).Send("charge-payment", chargeStep())
	}
	type staleFunc func(h *harness) (workflows.Decision, error)
	replyTo := func(cmd message.Envelope, body any) staleFunc {
		return func(h *harness) (workflows.Decision, error) {
			env, decoded := h.replyTo(cmd, body)
			return workflows.OnReply(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), env, decoded)
		}
	}
	timer := func(id string) staleFunc {
		return func(h *harness) (workflows.Decision, error) {
			return workflows.OnTimer(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), id)
		}
	}
	cases := []struct {
		name  string
		wf    func() workflows.Workflow
		setup func(h *harness) staleFunc
		want  error
	}{
		{"a reply naming another command", retryingReserve, func(h *harness) staleFunc {
			h.start(order1)
			cmd := h.pending()
			cmd.ID = "id-999"
			return replyTo(cmd, &stockReserved{ReservationID: "r-x"})
		}, workflows.ErrStale},
		{"a reply to an earlier attempt", retryingReserve, func(h *harness) staleFunc {
			h.start(order1)
			first := h.pending()
			h.play(retryable("busy"))
			return replyTo(first, &stockReserved{ReservationID: "r-x"})
		}, workflows.ErrStale},
		{"a reply while waiting to retry", retryingReserve, func(h *harness) staleFunc {
			h.start(order1)
			first := h.pending()
			h.reply(&message.Failure{Reason: "busy", Retryable: true})
			return replyTo(first, &stockReserved{ReservationID: "r-x"})
		}, workflows.ErrStale},
		{"a reply after the timeout", retryingReserve, func(h *harness) staleFunc {
			h.start(order1)
			first := h.pending()
			h.fire(workflows.TimerTimeout)
			return replyTo(first, &stockReserved{ReservationID: "r-x"})
		}, workflows.ErrStale},
		{"a second reply to an answered command", retryingReserve, func(h *harness) staleFunc {
			h.start(order1)
			first := h.pending()
			h.play(reserved)
			return replyTo(first, &stockReserved{ReservationID: "r-x"})
		}, workflows.ErrStale},
		{"a reply to a finished saga", retryingReserve, func(h *harness) staleFunc {
			h.start(order1)
			h.play(reserved)
			last := h.pending()
			h.play(charged)
			h.wantStatus(workflows.StatusCompleted)
			return replyTo(last, &paymentCharged{ChargeID: "ch-x"})
		}, workflows.ErrTerminal},
		{"an unknown timer", retryingReserve, func(h *harness) staleFunc {
			h.start(order1)
			return timer("no-such-timer")
		}, workflows.ErrStale},
		{"an empty timer ID", retryingReserve, func(h *harness) staleFunc {
			h.start(order1)
			return timer("")
		}, workflows.ErrStale},
		{"the timeout of an answered command", retryingReserve, func(h *harness) staleFunc {
			h.start(order1)
			id := h.inst.TimerID
			h.play(reserved)
			return timer(id)
		}, workflows.ErrStale},
		{"a retry timer after a cancel", retryingReserve, func(h *harness) staleFunc {
			h.start(order1)
			h.reply(&message.Failure{Reason: "busy", Retryable: true})
			id := h.inst.TimerID
			h.cancel("")
			return timer(id)
		}, workflows.ErrStale},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.wf())
			deliver := c.setup(h)
			before := snapshot(t, h.inst)
			stateBefore, err := json.Marshal(h.state)
			if err != nil {
				t.Fatal(err)
			}
			dec, err := deliver(h)
			h.checkGuard(c.name)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), sagaID) {
				t.Errorf("error %q does not name the saga", err)
			}
			if dec.Changed() || len(dec.Send) != 0 || len(dec.Timers) != 0 {
				t.Errorf("a refused input decided %+v", dec)
			}
			if after := snapshot(t, h.inst); after != before {
				t.Errorf("instance changed:\nbefore %s\nafter  %s", before, after)
			}
			if stateAfter, _ := json.Marshal(h.state); string(stateAfter) != string(stateBefore) {
				t.Errorf("cached state changed: %s -> %s", stateBefore, stateAfter)
			}
		})
	}
}

func TestCompensationFailuresAreRetriedThenParkedForAnOperator(t *testing.T) {
	thrice := workflows.RetryPolicy{MaxAttempts: 3, InitialInterval: 2 * time.Second, Multiplier: 2}
	cases := []struct {
		name        string
		compRetry   workflows.RetryPolicy
		script      []outcome // answers to the refund
		wantStatus  workflows.Status
		wantDelays  []time.Duration
		wantRefunds int
	}{
		{"retryable failures until the budget is spent", thrice,
			[]outcome{retryable("bank offline"), retryable("bank offline"), retryable("bank offline")},
			workflows.StatusNeedsAttention, []time.Duration{2 * time.Second, 4 * time.Second}, 3},
		{"timeouts until the budget is spent", thrice,
			[]outcome{timedOut(), timedOut(), timedOut()},
			workflows.StatusNeedsAttention, []time.Duration{2 * time.Second, 4 * time.Second}, 3},
		{"a non-retryable failure parks at once", thrice,
			[]outcome{rejected("charge unknown")},
			workflows.StatusNeedsAttention, nil, 1},
		{"failures within the budget, then success", thrice,
			[]outcome{retryable("bank offline"), timedOut(), accepted(), accepted()},
			workflows.StatusCompensated, []time.Duration{2 * time.Second, 4 * time.Second}, 3},
		{"the default budget is ten attempts", workflows.RetryPolicy{},
			append(slices.Repeat([]outcome{retryable("bank offline")}, 9), accepted(), accepted()),
			workflows.StatusCompensated, msDelays(100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000), 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			charge := chargeStep()
			charge.CompensationRetry = c.compRetry
			h := newHarness(t, workflows.New(wfName, 1, initOrder).
				Send("reserve-stock", reserveStep()).
				Send("charge-payment", charge).
				Send("ship-order", shipStep()))
			h.start(order1)
			h.play(reserved, charged, rejected("no such address"))
			h.play(c.script...)
			h.wantStatus(c.wantStatus)

			refunds := map[string]bool{}
			for _, m := range h.sent {
				if m.Type == typeRefund {
					refunds[m.ID] = true
				}
			}
			if len(refunds) != c.wantRefunds {
				t.Errorf("sent %d distinct refunds, want %d", len(refunds), c.wantRefunds)
			}
			if !slices.Equal(h.retryDelays, c.wantDelays) {
				t.Errorf("compensation retry delays = %v, want %v", h.retryDelays, c.wantDelays)
			}
			if c.wantStatus == workflows.StatusCompensated {
				return
			}
			last := h.history[len(h.history)-1]
			if last.Event != workflows.EventNeedsAttention || last.Step != "charge-payment" {
				t.Errorf("last record = %+v, want needs attention on charge-payment", last)
			}
			for _, m := range []string{`compensation of step "charge-payment"`, "attempts"} {
				if !strings.Contains(h.inst.Error, m) {
					t.Errorf("error %q does not mention %q", h.inst.Error, m)
				}
			}
			// Nothing was skipped: the reservation is still to be released,
			// and no later compensation ran.
			if slices.Contains(h.sentLines(), sentRelease) {
				t.Error("reserve-stock was compensated past a parked compensation")
			}
			// A parked saga takes no more automatic input.
			dec, err := workflows.Resume(h.ctx, h.wf, h.env(), h.inst, h.cachedState())
			if err != nil || dec.Changed() || len(dec.Send) != 0 {
				t.Errorf("Resume of a parked saga = %+v, %v; want nothing", dec, err)
			}
			if _, err := workflows.Cancel(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), "too late"); !errors.Is(err, workflows.ErrTerminal) {
				t.Errorf("Cancel of a parked saga: err = %v, want ErrTerminal", err)
			}
		})
	}
}

func TestCancelCompensatesWhatMayHaveBeenDone(t *testing.T) {
	ship := compensable(shipStep())
	cases := []struct {
		name       string
		wf         workflows.Workflow
		before     []outcome // answers before the cancel
		noResume   bool      // cancel before the first step ran
		after      []outcome // answers after the cancel
		wantStatus workflows.Status
		wantHist   []string // from the cancel on
		wantSent   []string // from the cancel on
	}{
		{
			name:       "while awaiting a compensable step 2",
			wf:         placeOrder().Send("ship-order", ship),
			before:     []outcome{reserved},
			after:      []outcome{accepted(), accepted()},
			wantStatus: workflows.StatusCancelled,
			wantHist: []string{
				"saga.cancel_requested",
				"compensation.started charge-payment", "compensation.succeeded charge-payment",
				"compensation.started reserve-stock", "compensation.succeeded reserve-stock",
				"saga.cancelled",
			},
			wantSent: []string{sentRefund, sentRelease},
		},
		{
			name:       "while awaiting a step without compensation",
			wf:         placeOrder().Send("ship-order", shipStep()),
			before:     []outcome{reserved, charged},
			after:      []outcome{accepted(), accepted()},
			wantStatus: workflows.StatusCancelled,
			wantHist: []string{
				"saga.cancel_requested",
				"compensation.started charge-payment", "compensation.succeeded charge-payment",
				"compensation.started reserve-stock", "compensation.succeeded reserve-stock",
				"saga.cancelled",
			},
			wantSent: []string{sentRefund, sentRelease},
		},
		{
			name:       "before the first step",
			wf:         placeOrder(),
			noResume:   true,
			wantStatus: workflows.StatusCancelled,
			wantHist:   []string{"saga.cancel_requested", "saga.cancelled"},
		},
		{
			name:       "while waiting to retry after a failure reply",
			wf:         placeOrder().Send("ship-order", withRetry(ship, workflows.RetryPolicy{MaxAttempts: 3})),
			before:     []outcome{reserved, charged, {"retryable, not fired", func(h *harness) { h.reply(&message.Failure{Reason: "busy", Retryable: true}) }}},
			after:      []outcome{accepted(), accepted()},
			wantStatus: workflows.StatusCancelled,
			wantHist: []string{
				"saga.cancel_requested",
				"compensation.started charge-payment", "compensation.succeeded charge-payment",
				"compensation.started reserve-stock", "compensation.succeeded reserve-stock",
				"saga.cancelled",
			},
			wantSent: []string{sentRefund, sentRelease},
		},
		{
			name:       "while waiting to retry after a timeout",
			wf:         placeOrder().Send("ship-order", withRetry(ship, workflows.RetryPolicy{MaxAttempts: 3})),
			before:     []outcome{reserved, charged, timedOut()},
			after:      []outcome{accepted(), accepted(), accepted()},
			wantStatus: workflows.StatusCancelled,
			wantHist: []string{
				"saga.cancel_requested",
				"compensation.started ship-order", "compensation.succeeded ship-order",
				"compensation.started charge-payment", "compensation.succeeded charge-payment",
				"compensation.started reserve-stock", "compensation.succeeded reserve-stock",
				"saga.cancelled",
			},
			wantSent: []string{sentCancelShipment, sentRefund, sentRelease},
		},
		{
			name:       "while compensating",
			wf:         placeOrder().Send("ship-order", shipStep()),
			before:     []outcome{reserved, charged, rejected("address unknown")},
			after:      []outcome{accepted(), accepted()},
			wantStatus: workflows.StatusCancelled,
			wantHist: []string{
				"saga.cancel_requested",
				"compensation.succeeded charge-payment",
				"compensation.started reserve-stock", "compensation.succeeded reserve-stock",
				"saga.cancelled",
			},
			wantSent: []string{sentRelease},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.wf)
			if c.noResume {
				input, _ := json.Marshal(order1)
				dec, err := workflows.Start(h.wf, h.env(), sagaID, corrID, input)
				h.apply("start", dec, err)
			} else {
				h.start(order1)
			}
			// Answer without firing retry timers: a cancel may come while one waits.
			for _, o := range c.before {
				o.do(h)
			}
			hist0, sent0 := len(h.history), len(h.sent)
			live := h.inst.TimerID
			compensating := h.inst.Status == workflows.StatusCompensating
			dec := h.cancel("customer changed their mind")
			if live != "" && !compensating && !slices.Equal(dec.CancelTimers, []string{live}) {
				t.Errorf("cancel cancelled timers %v, want the live timer %s", dec.CancelTimers, live)
			}
			if !h.inst.Cancelled || h.inst.Error == "" && !compensating {
				t.Errorf("instance after cancel: cancelled %v, error %q", h.inst.Cancelled, h.inst.Error)
			}
			h.play(c.after...)
			h.wantStatus(c.wantStatus)
			wantLines(t, "history", h.events()[hist0:], c.wantHist)
			wantLines(t, "sent", h.sentLines()[sent0:], c.wantSent)
			if r := h.history[hist0]; r.Detail != "customer changed their mind" {
				t.Errorf("cancel record says %q, want the reason", r.Detail)
			}
		})
	}
}

func TestCancelOfAFinishedSagaIsRefused(t *testing.T) {
	cases := []struct {
		name   string
		ship   workflows.CommandStep[orderState]
		script []outcome
		want   workflows.Status
	}{
		{"completed", shipStep(), []outcome{reserved, charged, shipped}, workflows.StatusCompleted},
		{"compensated", shipStep(), []outcome{reserved, charged, rejected("no"), accepted(), accepted()}, workflows.StatusCompensated},
		{"cancelled", shipStep(), []outcome{reserved, {"cancel", func(h *harness) { h.cancel("") }}, accepted(), accepted()}, workflows.StatusCancelled},
		{"needs attention", shipStep(), []outcome{reserved, charged, rejected("no"), rejected("cannot refund")}, workflows.StatusNeedsAttention},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, placeOrder().Send("ship-order", c.ship))
			h.start(order1)
			h.play(c.script...)
			h.wantStatus(c.want)
			before := snapshot(t, h.inst)
			_, err := workflows.Cancel(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), "again")
			if !errors.Is(err, workflows.ErrTerminal) {
				t.Fatalf("err = %v, want ErrTerminal", err)
			}
			if !strings.Contains(err.Error(), string(c.want)) {
				t.Errorf("error %q does not say the saga is %s", err, c.want)
			}
			if snapshot(t, h.inst) != before {
				t.Error("a refused cancel changed the instance")
			}
		})
	}
}

func TestCancelWithoutReasonSaysItWasRequested(t *testing.T) {
	h := newHarness(t, placeOrder())
	h.start(order1)
	h.cancel("")
	h.play(accepted())
	h.wantStatus(workflows.StatusCancelled)
	if h.inst.Error != "cancelled by request" {
		t.Errorf("error = %q", h.inst.Error)
	}
}

func TestResume(t *testing.T) {
	t.Run("a fresh instance sends step 1", func(t *testing.T) {
		h := newHarness(t, placeOrder())
		input, _ := json.Marshal(order1)
		dec, err := workflows.Start(h.wf, h.env(), sagaID, corrID, input)
		h.apply("start", dec, err)
		dec = h.resume()
		wantLines(t, "records", eventLines(dec.Records), []string{"step.started reserve-stock"})
		h.wantSent(sentReserve)
		if len(dec.Timers) != 1 || h.inst.TimerPurpose != workflows.TimerTimeout || h.inst.Pending.ID != h.sent[0].ID {
			t.Errorf("after resume: timers %v, instance %+v", dec.Timers, h.inst)
		}
	})
	t.Run("an instance awaiting a reply sends the same command again and re-arms its timeout", func(t *testing.T) {
		h := newHarness(t, placeOrder())
		h.start(order1)
		h.play(reserved)
		first := h.pending()
		timerID, due := h.inst.TimerID, h.inst.TimerDue
		h.advance(time.Hour) // an engine restart, much later
		dec := h.resume()
		wantLines(t, "records", eventLines(dec.Records), []string{"saga.timer_rearmed charge-payment"})
		if len(dec.Timers) != 1 || dec.Timers[0].ID != timerID || !dec.Timers[0].DueAt.Equal(due) || len(dec.CancelTimers) != 0 {
			t.Errorf("resume set timers %+v (cancelled %v), want timer %s again, due %v", dec.Timers, dec.CancelTimers, timerID, due)
		}
		if len(dec.Send) != 1 || !reflect.DeepEqual(dec.Send[0], first) {
			t.Fatalf("resume sent %+v, want the awaited command %+v", dec.Send, first)
		}
		pendingBefore := snapshot(t, dec.Instance)
		dec.Send[0].SetHeader("x", "y")
		dec.Send[0].Payload[0] = ' '
		if snapshot(t, dec.Instance) != pendingBefore {
			t.Error("the re-sent envelope shares memory with the instance")
		}
		h.play(charged)
		h.wantStatus(workflows.StatusCompleted)
	})
	t.Run("an instance waiting to retry re-arms its retry timer and waits", func(t *testing.T) {
		h := newHarness(t, workflows.New(wfName, 1, initOrder).Send("reserve-stock", withRetry(reserveStep(), workflows.RetryPolicy{MaxAttempts: 2})))
		h.start(order1)
		h.reply(&message.Failure{Reason: "busy", Retryable: true})
		timerID, due := h.inst.TimerID, h.inst.TimerDue
		dec := h.resume()
		if len(dec.Send) != 0 || len(dec.Timers) != 1 || dec.Timers[0].ID != timerID || !dec.Timers[0].DueAt.Equal(due) {
			t.Errorf("resume while a retry timer is live decided %+v", dec)
		}
		if dec.Instance.TimerID != timerID || dec.Instance.Attempt != 1 || dec.Instance.Pending != nil {
			t.Errorf("resume changed the wait: %+v", dec.Instance)
		}
	})
	t.Run("a finished instance does nothing", func(t *testing.T) {
		h := newHarness(t, placeOrder())
		h.start(order1)
		h.play(reserved, charged)
		h.wantStatus(workflows.StatusCompleted)
		dec := h.resume()
		if dec.Changed() || len(dec.Send) != 0 || dec.Instance.Status != workflows.StatusCompleted {
			t.Errorf("resume of a completed saga decided %+v", dec)
		}
	})
}

func TestLocalAndBuilderFailures(t *testing.T) {
	flaky := func(failures int, err error) workflows.LocalStep[orderState] {
		n := 0
		return workflows.LocalStep[orderState]{
			Run: func(_ context.Context, s *orderState) error {
				n++
				if n <= failures {
					return err
				}
				s.Points = 7
				return nil
			},
			Retry: workflows.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Second},
		}
	}
	panicky := workflows.LocalStep[orderState]{
		Run: func(context.Context, *orderState) error { panic("nil map") },
	}
	undoOnce := func(failures int) workflows.LocalStep[orderState] {
		n := 0
		return workflows.LocalStep[orderState]{
			Run: func(_ context.Context, s *orderState) error { s.Points = 7; return nil },
			Compensate: func(_ context.Context, s *orderState) error {
				n++
				if n <= failures {
					return errors.New("ledger locked")
				}
				s.Points = 0
				return nil
			},
			CompensationRetry: workflows.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Second},
		}
	}
	charge := func(f func(*workflows.CommandStep[orderState])) workflows.CommandStep[orderState] {
		c := chargeStep()
		f(&c)
		return c
	}
	cases := []struct {
		name       string
		step2      func(d *workflows.Definition[orderInput, orderState]) *workflows.Definition[orderInput, orderState]
		script     []outcome // answers after reserve-stock succeeded
		wantStatus workflows.Status
		wantHist   []string // the step-2 records
		mentions   string   // in the saga's error
	}{
		{
			name:       "a local error is retried",
			step2:      func(d *def) *def { return d.Do("award-points", flaky(2, errors.New("db busy"))) },
			wantStatus: workflows.StatusCompleted,
			wantHist:   []string{"step.retry_scheduled award-points", "step.retry_scheduled award-points", "step.succeeded award-points"},
		},
		{
			name:       "a local error fails the step once the budget is spent",
			step2:      func(d *def) *def { return d.Do("award-points", flaky(3, errors.New("db busy"))) },
			script:     []outcome{accepted()},
			wantStatus: workflows.StatusCompensated,
			wantHist:   []string{"step.retry_scheduled award-points", "step.retry_scheduled award-points", "step.failed award-points"},
			mentions:   "db busy",
		},
		{
			name: "a permanent local error is not retried",
			step2: func(d *def) *def {
				return d.Do("award-points", flaky(1, workflows.Permanent(errors.New("no such member"))))
			},
			script:     []outcome{accepted()},
			wantStatus: workflows.StatusCompensated,
			wantHist:   []string{"step.failed award-points"},
			mentions:   "no such member",
		},
		{
			name:       "a panicking local step fails the step",
			step2:      func(d *def) *def { return d.Do("award-points", panicky) },
			script:     []outcome{accepted()},
			wantStatus: workflows.StatusCompensated,
			wantHist:   []string{"step.failed award-points"},
			mentions:   "nil map",
		},
		{
			name: "a panicking command builder fails the step",
			step2: func(d *def) *def {
				return d.Send("charge-payment", charge(func(c *workflows.CommandStep[orderState]) {
					c.Command = func(*orderState) (workflows.Cmd, error) { panic("index out of range") }
				}))
			},
			script:     []outcome{accepted()},
			wantStatus: workflows.StatusCompensated,
			wantHist:   []string{"step.failed charge-payment"},
			mentions:   "index out of range",
		},
		{
			name: "a command builder error fails the step",
			step2: func(d *def) *def {
				return d.Send("charge-payment", charge(func(c *workflows.CommandStep[orderState]) {
					c.Command = func(*orderState) (workflows.Cmd, error) { return workflows.Cmd{}, errors.New("no card on file") }
				}))
			},
			script:     []outcome{accepted()},
			wantStatus: workflows.StatusCompensated,
			wantHist:   []string{"step.failed charge-payment"},
			mentions:   "no card on file",
		},
		{
			name: "a command without a key fails the step",
			step2: func(d *def) *def {
				return d.Send("charge-payment", charge(func(c *workflows.CommandStep[orderState]) {
					c.Command = func(*orderState) (workflows.Cmd, error) { return workflows.Cmd{Body: chargePayment{}}, nil }
				}))
			},
			script:     []outcome{accepted()},
			wantStatus: workflows.StatusCompensated,
			wantHist:   []string{"step.failed charge-payment"},
			mentions:   "Key",
		},
		{
			name: "an unregistered command fails the step",
			step2: func(d *def) *def {
				return d.Send("charge-payment", charge(func(c *workflows.CommandStep[orderState]) {
					c.Command = func(s *orderState) (workflows.Cmd, error) {
						return workflows.Cmd{Key: s.OrderID, Body: struct{ X int }{}}, nil
					}
				}))
			},
			script:     []outcome{accepted()},
			wantStatus: workflows.StatusCompensated,
			wantHist:   []string{"step.failed charge-payment"},
			mentions:   "not registered",
		},
		{
			// The participant did the work; the saga could not use the
			// reply. The step is undone too.
			name: "a reply handler error compensates the step",
			step2: func(d *def) *def {
				return d.Send("charge-payment", charge(func(c *workflows.CommandStep[orderState]) {
					c.OnReply = workflows.Reply(func(*orderState, *paymentCharged) error { return errors.New("currency mismatch") })
				}))
			},
			script:     []outcome{charged, accepted(), accepted()},
			wantStatus: workflows.StatusCompensated,
			wantHist:   []string{"step.started charge-payment", "step.failed charge-payment", "compensation.started charge-payment", "compensation.succeeded charge-payment"},
			mentions:   "currency mismatch",
		},
		{
			name:       "a reply of the wrong type compensates the step",
			step2:      func(d *def) *def { return d.Send("charge-payment", chargeStep()) },
			script:     []outcome{shipped, accepted(), accepted()},
			wantStatus: workflows.StatusCompensated,
			wantHist:   []string{"step.started charge-payment", "step.failed charge-payment", "compensation.started charge-payment", "compensation.succeeded charge-payment"},
			mentions:   "orderShipped",
		},
		{
			name: "a panicking reply handler compensates the step",
			step2: func(d *def) *def {
				return d.Send("charge-payment", charge(func(c *workflows.CommandStep[orderState]) {
					c.OnReply = func(*orderState, any) error { panic("boom") }
				}))
			},
			script:     []outcome{charged, accepted(), accepted()},
			wantStatus: workflows.StatusCompensated,
			wantHist:   []string{"step.started charge-payment", "step.failed charge-payment", "compensation.started charge-payment", "compensation.succeeded charge-payment"},
			mentions:   "boom",
		},
		{
			name: "a panicking compensation builder parks the saga",
			step2: func(d *def) *def {
				return d.Send("charge-payment", charge(func(c *workflows.CommandStep[orderState]) {
					c.Compensate = func(*orderState) (workflows.Cmd, error) { panic("refund builder") }
				})).Send("ship-order", shipStep())
			},
			script:     []outcome{charged, rejected("no address")},
			wantStatus: workflows.StatusNeedsAttention,
			wantHist:   []string{"step.started charge-payment", "step.succeeded charge-payment", "saga.needs_attention charge-payment"},
			mentions:   "refund builder",
		},
		{
			name: "a local compensation error is retried",
			step2: func(d *def) *def {
				return d.Do("award-points", undoOnce(2)).Send("ship-order", shipStep())
			},
			script:     []outcome{rejected("no address"), accepted()},
			wantStatus: workflows.StatusCompensated,
			wantHist: []string{"step.succeeded award-points", "compensation.retry_scheduled award-points",
				"compensation.retry_scheduled award-points", "compensation.succeeded award-points"},
		},
		{
			name: "a local compensation error past the budget parks the saga",
			step2: func(d *def) *def {
				return d.Do("award-points", undoOnce(3)).Send("ship-order", shipStep())
			},
			script:     []outcome{rejected("no address")},
			wantStatus: workflows.StatusNeedsAttention,
			wantHist: []string{"step.succeeded award-points", "compensation.retry_scheduled award-points",
				"compensation.retry_scheduled award-points", "saga.needs_attention award-points"},
			mentions: "ledger locked",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wf := c.step2(workflows.New(wfName, 1, initOrder).Send("reserve-stock", reserveStep()))
			h := newHarness(t, wf)
			h.start(order1)
			h.play(reserved)
			h.play(c.script...)
			h.wantStatus(c.wantStatus)
			var step2 []string
			for _, r := range h.history {
				if r.Step != "" && r.Step != "reserve-stock" && r.Step != "ship-order" {
					step2 = append(step2, strings.TrimSpace(r.Event+" "+r.Step))
				}
			}
			wantLines(t, "step-2 history", step2, c.wantHist)
			if !strings.Contains(h.inst.Error, c.mentions) {
				t.Errorf("error %q does not mention %q", h.inst.Error, c.mentions)
			}
			if c.wantStatus == workflows.StatusCompensated && !slices.Contains(h.sentLines(), sentRelease) {
				t.Error("reserve-stock was not compensated")
			}
			if c.wantStatus == workflows.StatusCompleted && h.orderState().Points != 7 {
				t.Errorf("state after the local step = %+v", h.orderState())
			}
		})
	}
}

type def = workflows.Definition[orderInput, orderState]

func msDelays(ms ...int) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = time.Duration(m) * time.Millisecond
	}
	return out
}

func TestCompensationGoesToCompensationService(t *testing.T) {
	charge := chargeStep()
	charge.CompensationService = "refunds"
	h := newHarness(t, workflows.New(wfName, 1, initOrder).Send("charge-payment", charge).Send("ship-order", shipStep()))
	h.start(order1)
	h.play(charged, rejected("no address"))
	last := h.pending()
	if last.Destination != "refunds" || last.Type != typeRefund {
		t.Errorf("compensation sent to %q as %s, want refunds", last.Destination, last.Type)
	}
	if last.Header(message.HeaderReplyTo) != sagaQueue {
		t.Errorf("compensation reply-to = %q", last.Header(message.HeaderReplyTo))
	}
}

// TestInstanceSurvivesJSON plays the same scripts twice: once with the
// cached state handed back to the machine, once with the instance
// round-tripped through JSON after every transition and the state decoded
// from it, as an engine that restarts between messages does. Both must
// decide the same.
func TestInstanceSurvivesJSON(t *testing.T) {
	t.Run("round trip", func(t *testing.T) {
		h := newHarness(t, placeOrder().Send("ship-order", withRetry(compensable(shipStep()), workflows.RetryPolicy{MaxAttempts: 2})))
		h.start(order1)
		h.play(reserved, charged, timedOut())
		if h.inst.Pending == nil || len(h.inst.Done) == 0 || h.inst.TimerID == "" {
			t.Fatalf("want an instance with a pending command, done steps and a timer: %+v", h.inst)
		}
		data, err := json.Marshal(h.inst)
		if err != nil {
			t.Fatal(err)
		}
		var back workflows.Instance
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, h.inst) {
			t.Errorf("round trip changed the instance:\n got %+v\nwant %+v", back, h.inst)
		}
		// Continue from the decoded copy, without the cached state.
		h.inst, h.persist = back, true
		h.play(shipped)
		h.wantStatus(workflows.StatusCompleted)
		if got := h.orderState(); got.ReservationID != "r-1" || got.ChargeID != "ch-1" || got.TrackingNo != "trk-1" {
			t.Errorf("state = %+v", got)
		}
	})
	scripts := []struct {
		name   string
		ship   workflows.CommandStep[orderState]
		script []outcome
		want   workflows.Status
	}{
		{"completed", shipStep(), []outcome{reserved, charged, shipped}, workflows.StatusCompleted},
		{"retried and compensated", withRetry(compensable(shipStep()), workflows.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Second, Jitter: 0.3}),
			[]outcome{reserved, charged, retryable("busy"), timedOut(), rejected("no"), timedOut(), accepted(), accepted(), accepted()}, workflows.StatusCompensated},
		{"cancelled", compensable(shipStep()),
			[]outcome{reserved, {"cancel", func(h *harness) { h.cancel("stop") }}, accepted(), accepted()}, workflows.StatusCancelled},
		{"parked", shipStep(), []outcome{reserved, charged, rejected("no"), rejected("cannot refund")}, workflows.StatusNeedsAttention},
	}
	for _, s := range scripts {
		t.Run(s.name, func(t *testing.T) {
			run := func(persist bool) *harness {
				h := newHarness(t, placeOrder().Send("ship-order", s.ship))
				h.persist, h.rnd = persist, 0.9
				h.start(order1)
				h.play(s.script...)
				h.wantStatus(s.want)
				return h
			}
			cached, persisted := run(false), run(true)
			wantLines(t, "history", persisted.events(), cached.events())
			if !reflect.DeepEqual(persisted.sent, cached.sent) {
				t.Errorf("sent differ:\npersisted %v\ncached    %v", persisted.sentLines(), cached.sentLines())
			}
			if a, b := snapshot(t, persisted.inst), snapshot(t, cached.inst); a != b {
				t.Errorf("final instances differ:\npersisted %s\ncached    %s", a, b)
			}
		})
	}
}

func TestMachineReportsAStoredStateThatDoesNotDecode(t *testing.T) {
	h := newHarness(t, placeOrder())
	h.start(order1)
	env, decoded := h.replyTo(h.pending(), &stockReserved{ReservationID: "r-1"})
	broken := h.inst
	broken.State = []byte(`{"qty":"two"}`)
	_, err := workflows.OnReply(h.ctx, h.wf, h.env(), broken, nil, env, decoded)
	if err == nil || !strings.Contains(err.Error(), wfName) || !strings.Contains(err.Error(), "decode state") {
		t.Errorf("err = %v, want a decode error naming the workflow", err)
	}
}
