package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/workflows"
)

// This file holds the test saga (an order: reserve stock, charge payment,
// ship, award loyalty points) and a harness that plays it through scripted
// replies against a deterministic Env, so that the machine tests read like
// specifications.

// --- the order saga's messages ----------------------------------------------

type orderInput struct {
	OrderID string `json:"order_id"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
	Amount  int    `json:"amount"`
}

type orderState struct {
	OrderID       string   `json:"order_id"`
	SKU           string   `json:"sku"`
	Qty           int      `json:"qty"`
	Amount        int      `json:"amount"`
	ReservationID string   `json:"reservation_id,omitempty"`
	ChargeID      string   `json:"charge_id,omitempty"`
	TrackingNo    string   `json:"tracking_no,omitempty"`
	Points        int      `json:"points,omitempty"`
	Log           []string `json:"log,omitempty"`
}

type reserveStock struct {
	OrderID string `json:"order_id"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
}
type stockReserved struct {
	ReservationID string `json:"reservation_id"`
}
type releaseStock struct {
	ReservationID string `json:"reservation_id"`
}
type chargePayment struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
}
type paymentCharged struct {
	ChargeID string `json:"charge_id"`
}
type refundPayment struct {
	ChargeID string `json:"charge_id"`
}
type shipOrder struct {
	OrderID string `json:"order_id"`
}
type orderShipped struct {
	TrackingNo string `json:"tracking_no"`
}
type cancelShipment struct {
	OrderID string `json:"order_id"`
}

// Type names of the saga's messages.
const (
	typeReserve        = "inventory.ReserveStock.v1"
	typeReserved       = "inventory.StockReserved.v1"
	typeRelease        = "inventory.ReleaseStock.v1"
	typeCharge         = "payments.ChargePayment.v1"
	typeCharged        = "payments.PaymentCharged.v1"
	typeRefund         = "payments.RefundPayment.v1"
	typeShip           = "shipping.ShipOrder.v1"
	typeShipped        = "shipping.OrderShipped.v1"
	typeCancelShipment = "shipping.CancelShipment.v1"
)

// newRegistry registers the builtins, the saga control messages and the
// order saga's commands and replies.
func newRegistry(t *testing.T) *message.Registry {
	t.Helper()
	r := message.NewRegistry(nil)
	for _, err := range []error{
		message.RegisterBuiltins(r),
		workflows.RegisterMessages(r),
		message.Register[reserveStock](r, typeReserve),
		message.Register[stockReserved](r, typeReserved),
		message.Register[releaseStock](r, typeRelease),
		message.Register[chargePayment](r, typeCharge),
		message.Register[paymentCharged](r, typeCharged),
		message.Register[refundPayment](r, typeRefund),
		message.Register[shipOrder](r, typeShip),
		message.Register[orderShipped](r, typeShipped),
		message.Register[cancelShipment](r, typeCancelShipment),
	} {
		if err != nil {
			t.Fatalf("register: %v", err)
		}
	}
	return r
}

// --- the order saga's steps --------------------------------------------------

const (
	wfName     = "orders.PlaceOrder"
	sagaQueue  = "sagas"
	engineName = "engine-test"
	sagaID     = "saga-1"
	corrID     = "corr-1"
)

func initOrder(in orderInput) (orderState, error) {
	if in.OrderID == "" {
		return orderState{}, errors.New("order_id is required")
	}
	return orderState{OrderID: in.OrderID, SKU: in.SKU, Qty: in.Qty, Amount: in.Amount}, nil
}

func reserveStep() workflows.CommandStep[orderState] {
	return workflows.CommandStep[orderState]{
		Service: "inventory",
		Command: func(s *orderState) (workflows.Cmd, error) {
			return workflows.Cmd{Key: s.OrderID, Body: reserveStock{OrderID: s.OrderID, SKU: s.SKU, Qty: s.Qty}}, nil
		},
		OnReply: workflows.Reply(func(s *orderState, r *stockReserved) error {
			s.ReservationID = r.ReservationID
			return nil
		}),
		Compensate: func(s *orderState) (workflows.Cmd, error) {
			return workflows.Cmd{Key: s.OrderID, Body: releaseStock{ReservationID: s.ReservationID}}, nil
		},
		Timeout: 5 * time.Second,
	}
}

func chargeStep() workflows.CommandStep[orderState] {
	return workflows.CommandStep[orderState]{
		Service: "payments",
		Command: func(s *orderState) (workflows.Cmd, error) {
			return workflows.Cmd{Key: s.OrderID, Body: chargePayment{OrderID: s.OrderID, Amount: s.Amount}}, nil
		},
		OnReply: workflows.Reply(func(s *orderState, r *paymentCharged) error {
			s.ChargeID = r.ChargeID
			return nil
		}),
		Compensate: func(s *orderState) (workflows.Cmd, error) {
			return workflows.Cmd{Key: s.OrderID, Body: refundPayment{ChargeID: s.ChargeID}}, nil
		},
		Timeout: 5 * time.Second,
	}
}

// shipStep has no compensation: a parcel handed to the carrier stays sent.
func shipStep() workflows.CommandStep[orderState] {
	return workflows.CommandStep[orderState]{
		Service: "shipping",
		Command: func(s *orderState) (workflows.Cmd, error) {
			return workflows.Cmd{Key: s.OrderID, Body: shipOrder{OrderID: s.OrderID}}, nil
		},
		OnReply: workflows.Reply(func(s *orderState, r *orderShipped) error {
			s.TrackingNo = r.TrackingNo
			return nil
		}),
		Timeout: 5 * time.Second,
	}
}

// compensable gives a ship step a compensation (cancel the shipment).
func compensable(c workflows.CommandStep[orderState]) workflows.CommandStep[orderState] {
	c.Compensate = func(s *orderState) (workflows.Cmd, error) {
		return workflows.Cmd{Key: s.OrderID, Body: cancelShipment{OrderID: s.OrderID}}, nil
	}
	return c
}

func pointsStep() workflows.LocalStep[orderState] {
	return workflows.LocalStep[orderState]{
		Run: func(_ context.Context, s *orderState) error {
			s.Points = s.Amount / 10
			return nil
		},
	}
}

// placeOrder is the saga's first two steps; tests append the rest.
func placeOrder() *workflows.Definition[orderInput, orderState] {
	return workflows.New(wfName, 1, initOrder).
		Send("reserve-stock", reserveStep()).
		Send("charge-payment", chargeStep())
}

var order1 = orderInput{OrderID: "o-1", SKU: "book", Qty: 2, Amount: 40}

// --- the harness -------------------------------------------------------------

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// harness plays one saga instance through the Machine. It keeps what an
// engine would persist (the instance, the history, the outbox, the timers)
// and checks the machine's invariants after every transition.
type harness struct {
	t   *testing.T
	wf  workflows.Workflow
	reg *message.Registry
	ctx context.Context

	now time.Time
	ids int
	rnd float64
	// persist round-trips the instance through JSON after every transition
	// and drops the cached state, as an engine that restarts would.
	persist bool

	inst      workflows.Instance
	state     any
	history   []workflows.Record
	sent      []message.Envelope
	timers    map[string]workflows.TimerSpec
	cancelled []string
	// retryDelays lists the delay of every retry timer, in order.
	retryDelays []time.Duration
	replies     int
	// playing names the scripted outcome being played, for failures.
	playing string
	// guard is inst.Done with spare capacity filled with guardValue: the
	// machine must never write into the caller's instance.
	guard []int
}

const guardValue = -7

func newHarness(t *testing.T, wf workflows.Workflow) *harness {
	t.Helper()
	if err := wf.Validate(); err != nil {
		t.Fatalf("test workflow is invalid: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &harness{t: t, wf: wf, reg: newRegistry(t), ctx: ctx, now: t0, rnd: 0.5, timers: map[string]workflows.TimerSpec{}}
}

// env is a deterministic Env: the harness's clock, counter IDs, fixed Rand.
func (h *harness) env() workflows.Env {
	return workflows.Env{
		Now:    h.now,
		NewID:  func() string { h.ids++; return fmt.Sprintf("id-%d", h.ids) },
		Rand:   func() float64 { return h.rnd },
		Encode: h.reg.Encode,
		Queue:  sagaQueue,
		Source: engineName,
	}
}

func (h *harness) advance(d time.Duration) { h.now = h.now.Add(d) }

// cachedState is the state to hand the machine: nil in persist mode.
func (h *harness) cachedState() any {
	if h.persist {
		return nil
	}
	return h.state
}

// apply accepts a decision the way an engine commits it.
func (h *harness) apply(what string, dec workflows.Decision, err error) workflows.Decision {
	h.t.Helper()
	h.checkGuard(what)
	if err != nil {
		h.t.Fatalf("%s: %v", what, err)
	}
	h.history = append(h.history, dec.Records...)
	h.sent = append(h.sent, dec.Send...)
	h.cancelled = append(h.cancelled, dec.CancelTimers...)
	for _, tm := range dec.Timers {
		h.checkTimer(tm)
		h.timers[tm.ID] = tm
	}
	inst := dec.Instance
	if inst.TimerPurpose == workflows.TimerRetry && len(dec.Timers) > 0 {
		h.retryDelays = append(h.retryDelays, dec.Timers[len(dec.Timers)-1].DueAt.Sub(h.now))
	}
	h.checkInvariants(what, dec)
	h.inst, h.state = inst, dec.State
	if h.persist {
		data, err := json.Marshal(inst)
		if err != nil {
			h.t.Fatalf("%s: encode instance: %v", what, err)
		}
		var back workflows.Instance
		if err := json.Unmarshal(data, &back); err != nil {
			h.t.Fatalf("%s: decode instance: %v", what, err)
		}
		h.inst, h.state = back, nil
	}
	h.setGuard()
	return dec
}

// setGuard gives inst.Done spare capacity holding guardValue.
func (h *harness) setGuard() {
	n := len(h.inst.Done)
	g := make([]int, n+4)
	copy(g, h.inst.Done)
	for i := n; i < len(g); i++ {
		g[i] = guardValue
	}
	h.inst.Done, h.guard = g[:n], g
}

// checkGuard fails the test if the machine wrote into the caller's Done.
func (h *harness) checkGuard(what string) {
	h.t.Helper()
	for i := len(h.inst.Done); i < len(h.guard); i++ {
		if h.guard[i] != guardValue {
			h.t.Fatalf("%s: the machine wrote %d into the caller's Done (index %d)", what, h.guard[i], i)
		}
	}
}

func (h *harness) checkTimer(tm workflows.TimerSpec) {
	h.t.Helper()
	m := tm.Message
	if m.Type != workflows.TypeTimerFired || m.Destination != sagaQueue || m.Key != sagaID || m.SagaID != sagaID {
		h.t.Errorf("timer %s message = %+v, want a %s to %s keyed by the saga", tm.ID, m, workflows.TypeTimerFired, sagaQueue)
	}
	body, err := h.reg.DecodeEnvelope(m)
	if err != nil {
		h.t.Fatalf("timer %s: %v", tm.ID, err)
	}
	if got := body.(*workflows.TimerFired).TimerID; got != tm.ID {
		h.t.Errorf("timer %s fires with timer ID %q", tm.ID, got)
	}
	// A new timer is never due in the past; a re-armed one (Resume after a
	// restart) keeps its original due time, which may be.
	if tm.DueAt.Before(h.now) && !h.liveTimer(tm.ID) {
		h.t.Errorf("timer %s is due at %v, before now (%v)", tm.ID, tm.DueAt, h.now)
	}
}

// liveTimer reports whether id is one of the instance's live timers.
func (h *harness) liveTimer(id string) bool {
	if id == h.inst.TimerID || id == h.inst.DeadlineTimerID {
		return true
	}
	for _, b := range h.inst.Branches {
		if b.TimerID == id {
			return true
		}
	}
	return false
}

// checkInvariants holds after every transition.
func (h *harness) checkInvariants(what string, dec workflows.Decision) {
	h.t.Helper()
	in := dec.Instance
	if !in.Status.Valid() {
		h.t.Errorf("%s: status %q is not valid", what, in.Status)
	}
	if in.Uncertain && in.Status != workflows.StatusRunning {
		h.t.Errorf("%s: a %s saga is marked uncertain", what, in.Status)
	}
	if in.Pending != nil && in.TimerPurpose != workflows.TimerTimeout {
		h.t.Errorf("%s: a command is awaited without a timeout timer (timer %q %q)", what, in.TimerID, in.TimerPurpose)
	}
	if (in.Status.Terminal() || in.Status == workflows.StatusNeedsAttention) && (in.Pending != nil || in.TimerID != "") {
		h.t.Errorf("%s: %s saga still awaits %v / timer %q", what, in.Status, in.Pending, in.TimerID)
	}
	for _, b := range in.Branches {
		if b.Pending != nil && b.TimerPurpose != workflows.TimerTimeout {
			h.t.Errorf("%s: branch %d awaits a command without a timeout timer", what, b.Step)
		}
	}
	if in.Status != workflows.StatusRunning && (len(in.Branches) > 0 || in.Wait != nil) {
		h.t.Errorf("%s: a %s saga still has branches %+v or a wait %+v", what, in.Status, in.Branches, in.Wait)
	}
	if in.Status.Terminal() && in.DeadlineTimerID != "" {
		h.t.Errorf("%s: a %s saga keeps its deadline timer %s", what, in.Status, in.DeadlineTimerID)
	}
	if dec.Changed() && !in.UpdatedAt.Equal(h.now) {
		h.t.Errorf("%s: UpdatedAt = %v, want now %v", what, in.UpdatedAt, h.now)
	}
	if dec.Changed() {
		if _, err := h.wf.DecodeState(in.State); err != nil {
			h.t.Errorf("%s: persisted state does not decode: %v", what, err)
		}
	}
	for _, m := range dec.Send {
		if err := m.Validate(); err != nil {
			h.t.Errorf("%s: sent an invalid envelope: %v", what, err)
		}
	}
}

// start creates the saga from in and delivers the first Resume.
func (h *harness) start(in any) {
	h.t.Helper()
	data, err := json.Marshal(in)
	if err != nil {
		h.t.Fatal(err)
	}
	dec, err := workflows.Start(h.wf, h.env(), sagaID, corrID, data)
	h.apply("start", dec, err)
	h.resume()
}

func (h *harness) resume() workflows.Decision {
	h.t.Helper()
	dec, err := workflows.Resume(h.ctx, h.wf, h.env(), h.inst, h.cachedState())
	return h.apply("resume", dec, err)
}

func (h *harness) cancel(reason string) workflows.Decision {
	h.t.Helper()
	dec, err := workflows.Cancel(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), reason)
	return h.apply("cancel", dec, err)
}

// pending returns the awaited command, failing the test when there is none.
func (h *harness) pending() message.Envelope {
	h.t.Helper()
	if h.inst.Pending == nil {
		h.t.Fatalf("%ssaga awaits no command (status %s, step %d, timer %q %q)", h.playing, h.inst.Status, h.inst.Step, h.inst.TimerID, h.inst.TimerPurpose)
	}
	return *h.inst.Pending
}

// replyTo builds the reply envelope a participant sends to cmd.
func (h *harness) replyTo(cmd message.Envelope, body any) (message.Envelope, any) {
	h.t.Helper()
	typeName, payload, err := h.reg.Encode(body)
	if err != nil {
		h.t.Fatalf("encode reply: %v", err)
	}
	h.replies++
	env := message.Envelope{
		ID: fmt.Sprintf("reply-%d", h.replies), Kind: message.KindReply, Type: typeName,
		Source: cmd.Destination, Destination: cmd.Header(message.HeaderReplyTo), Key: cmd.Key,
		SagaID: cmd.SagaID, CorrelationID: cmd.CorrelationID, CausationID: cmd.ID,
		OccurredAt: h.now, Payload: payload,
	}
	decoded, err := h.reg.DecodeEnvelope(env)
	if err != nil {
		h.t.Fatalf("decode reply: %v", err)
	}
	return env, decoded
}

// reply answers the awaited command with body (a success or a Failure).
func (h *harness) reply(body any) workflows.Decision {
	h.t.Helper()
	env, decoded := h.replyTo(h.pending(), body)
	h.advance(time.Second)
	dec, err := workflows.OnReply(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), env, decoded)
	return h.apply("reply "+env.Type, dec, err)
}

// fire advances the clock to the live timer, which must be for purpose,
// and delivers it.
func (h *harness) fire(purpose workflows.TimerPurpose) workflows.Decision {
	h.t.Helper()
	if h.inst.TimerID == "" || h.inst.TimerPurpose != purpose {
		h.t.Fatalf("%swant a live %s timer, have %q %q (status %s)", h.playing, purpose, h.inst.TimerID, h.inst.TimerPurpose, h.inst.Status)
	}
	tm, ok := h.timers[h.inst.TimerID]
	if !ok {
		h.t.Fatalf("live timer %s was never asked for", h.inst.TimerID)
	}
	h.now = tm.DueAt
	dec, err := workflows.OnTimer(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), tm.ID)
	return h.apply(fmt.Sprintf("%s timer %s", purpose, tm.ID), dec, err)
}

// outcome is one scripted answer to the awaited command.
type outcome struct {
	name string
	do   func(h *harness)
}

func ok(reply any) outcome {
	return outcome{"ok", func(h *harness) { h.reply(reply) }}
}

func accepted() outcome { return ok(&message.Accepted{}) }

func retryable(reason string) outcome {
	return outcome{"retryable " + reason, func(h *harness) { h.reply(&message.Failure{Reason: reason, Retryable: true}) }}
}

func rejected(reason string) outcome {
	return outcome{"rejected " + reason, func(h *harness) { h.reply(&message.Failure{Reason: reason}) }}
}

func timedOut() outcome {
	return outcome{"timeout", func(h *harness) { h.fire(workflows.TimerTimeout) }}
}

// play answers the awaited commands in order. A retry timer set by an
// answer fires at once (at its due time), so the next outcome answers the
// next attempt.
func (h *harness) play(outs ...outcome) {
	h.t.Helper()
	for i, o := range outs {
		h.playing = fmt.Sprintf("outcome %d of %d (%s): ", i+1, len(outs), o.name)
		o.do(h)
		for h.inst.TimerPurpose == workflows.TimerRetry {
			h.fire(workflows.TimerRetry)
		}
	}
	h.playing = ""
}

// events is the history as "event step" lines.
func (h *harness) events() []string {
	return eventLines(h.history)
}

func eventLines(recs []workflows.Record) []string {
	out := make([]string, 0, len(recs))
	for _, r := range recs {
		out = append(out, strings.TrimSpace(r.Event+" "+r.Step))
	}
	return out
}

func (h *harness) wantHistory(want ...string) {
	h.t.Helper()
	wantLines(h.t, "history", h.events(), want)
}

// sentLines is every sent command as "destination type key".
func (h *harness) sentLines() []string {
	out := make([]string, 0, len(h.sent))
	for _, m := range h.sent {
		out = append(out, m.Destination+" "+m.Type+" "+m.Key)
	}
	return out
}

func (h *harness) wantSent(want ...string) {
	h.t.Helper()
	wantLines(h.t, "sent", h.sentLines(), want)
}

func (h *harness) wantStatus(want workflows.Status) {
	h.t.Helper()
	if h.inst.Status != want {
		h.t.Fatalf("status = %s (error %q), want %s\nhistory:\n  %s", h.inst.Status, h.inst.Error, want, strings.Join(h.events(), "\n  "))
	}
}

// orderState decodes the persisted state: what the engine would reload.
func (h *harness) orderState() orderState {
	h.t.Helper()
	var s orderState
	if err := json.Unmarshal(h.inst.State, &s); err != nil {
		h.t.Fatalf("decode persisted state: %v", err)
	}
	return s
}

// body decodes a sent command's payload.
func (h *harness) body(m message.Envelope) any {
	h.t.Helper()
	v, err := h.reg.DecodeEnvelope(m)
	if err != nil {
		h.t.Fatal(err)
	}
	return v
}

func wantLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// snapshot is a deep copy of an instance, to check it was not touched.
func snapshot(t *testing.T, inst workflows.Instance) string {
	t.Helper()
	data, err := json.Marshal(inst)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
