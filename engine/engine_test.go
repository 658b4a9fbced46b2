package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/actors"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/internal/enginetest"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/workflows"
)

// fastRetry makes the shipping step's retries quick in tests.
var fastRetry = workflows.RetryPolicy{MaxAttempts: 3, InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond, Multiplier: 2}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// runEngine runs e until the test ends and returns once it is ready.
func runEngine(t *testing.T, e *engine.Engine) {
	t.Helper()
	enginetest.Run(t, e)
}

func newOrdersEngine(t *testing.T, opts engine.Options) *engine.Engine {
	t.Helper()
	if opts.DataDir == "" && opts.Store == nil {
		opts.DataDir = t.TempDir()
	}
	if opts.AdminAddr == "" {
		opts.AdminAddr = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	e := orders.Register(engine.New(opts), fastRetry)
	if err := e.Err(); err != nil {
		t.Fatalf("register: %v", err)
	}
	runEngine(t, e)
	return e
}

func startOrder(t *testing.T, e *engine.Engine, in orders.Input) string {
	t.Helper()
	return enginetest.StartOrder(t, e, in)
}

func waitSaga(t *testing.T, e *engine.Engine, id string) engine.Saga {
	t.Helper()
	return enginetest.WaitSaga(t, e, id, 20*time.Second)
}

// eventTypes returns the event types recorded in an aggregate's stream.
func eventTypes(t *testing.T, st store.Store, aggType, id string) []string {
	t.Helper()
	commits, err := st.Load(context.Background(), actors.AggregateStream(aggType, id), 1)
	if err != nil {
		t.Fatalf("load %s/%s: %v", aggType, id, err)
	}
	var types []string
	for _, c := range commits {
		for _, ev := range c.Events {
			types = append(types, ev.Type)
		}
	}
	return types
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// events lists, per participant aggregate, the events an order must leave.
type participantEvents struct {
	inventory, payments, shipping []string
}

var (
	completedEffects = participantEvents{
		inventory: []string{"inventory.StockReserved.v1"},
		payments:  []string{"payments.PaymentCharged.v1"},
		shipping:  []string{"shipping.OrderShipped.v1"},
	}
	shippingFailedEffects = participantEvents{
		inventory: []string{"inventory.StockReserved.v1", "inventory.StockReleased.v1"},
		payments:  []string{"payments.PaymentCharged.v1", "payments.PaymentRefunded.v1"},
		shipping:  nil,
	}
)

// checkEffects asserts each participant applied exactly the expected events.
func checkEffects(t *testing.T, st store.Store, orderID string, want participantEvents) {
	t.Helper()
	for _, c := range []struct {
		aggType string
		want    []string
	}{
		{"inventory.Reservation", want.inventory},
		{"payments.Payment", want.payments},
		{"shipping.Shipment", want.shipping},
	} {
		if got := eventTypes(t, st, c.aggType, orderID); !equalStrings(got, c.want) {
			t.Errorf("order %s: %s events = %v, want %v", orderID, c.aggType, got, c.want)
		}
	}
}

// stepEvents returns the history's events of one step, in order.
func stepEvents(s engine.Saga, step string) []string {
	var out []string
	for _, r := range s.History {
		if r.Step == step {
			out = append(out, r.Event)
		}
	}
	return out
}

func TestHappyPathRunsEveryStepOnceAndCompletes(t *testing.T) {
	forEachStore(t, testHappyPath)
}

func testHappyPath(t *testing.T, ts testStore) {
	e := newOrdersEngine(t, ts.options(t))
	id := startOrder(t, e, orders.Input{OrderID: "o-happy", SKU: "book", Qty: 1, Amount: 20, Address: "1 Main St"})
	s := waitSaga(t, e, id)
	if s.Status != workflows.StatusCompleted {
		t.Fatalf("status = %s (%s), want completed", s.Status, s.Error)
	}
	for _, step := range []string{"reserve-stock", "charge-payment", "ship-order"} {
		if got, want := stepEvents(s, step), []string{workflows.EventStepStarted, workflows.EventStepSucceeded}; !equalStrings(got, want) {
			t.Errorf("step %s history = %v, want %v", step, got, want)
		}
	}
	var state orders.State
	if err := json.Unmarshal(s.State, &state); err != nil {
		t.Fatal(err)
	}
	if state.ChargeID != "ch-o-happy" || state.TrackingNo != "trk-o-happy" {
		t.Errorf("replies not folded into state: %+v", state)
	}
	checkEffects(t, e.Store(), "o-happy", completedEffects)
}

func TestFailingStepCompensatesCompletedStepsInReverseOrder(t *testing.T) {
	forEachStore(t, testFailingStepCompensates)
}

func testFailingStepCompensates(t *testing.T, ts testStore) {
	e := newOrdersEngine(t, ts.options(t))
	id := startOrder(t, e, orders.Input{OrderID: "o-fail", SKU: "lamp", Qty: 1, Amount: 20, Address: orders.Unreachable})
	s := waitSaga(t, e, id)
	if s.Status != workflows.StatusCompensated {
		t.Fatalf("status = %s, want compensated", s.Status)
	}
	wantShip := []string{
		workflows.EventStepStarted, workflows.EventStepRetryScheduled,
		workflows.EventStepStarted, workflows.EventStepRetryScheduled,
		workflows.EventStepStarted, workflows.EventStepFailed,
	}
	if got := stepEvents(s, "ship-order"); !equalStrings(got, wantShip) {
		t.Errorf("ship-order history = %v, want %v (3 attempts)", got, wantShip)
	}
	// Compensations: charge-payment, then reserve-stock, each once.
	var order []string
	for _, r := range s.History {
		if r.Event == workflows.EventCompensationSucceeded {
			order = append(order, r.Step)
		}
	}
	if want := []string{"charge-payment", "reserve-stock"}; !equalStrings(order, want) {
		t.Errorf("compensation order = %v, want %v", order, want)
	}
	checkEffects(t, e.Store(), "o-fail", shippingFailedEffects)
}

func TestBusinessFailureCompensatesWithoutRetry(t *testing.T) {
	e := newOrdersEngine(t, engine.Options{})
	id := startOrder(t, e, orders.Input{OrderID: "o-declined", SKU: "piano", Qty: 1, Amount: orders.MaxAmount + 1, Address: "x"})
	s := waitSaga(t, e, id)
	if s.Status != workflows.StatusCompensated {
		t.Fatalf("status = %s, want compensated", s.Status)
	}
	if got, want := stepEvents(s, "charge-payment"), []string{workflows.EventStepStarted, workflows.EventStepFailed}; !equalStrings(got, want) {
		t.Errorf("charge-payment history = %v, want %v", got, want)
	}
	checkEffects(t, e.Store(), "o-declined", participantEvents{
		inventory: []string{"inventory.StockReserved.v1", "inventory.StockReleased.v1"},
	})
}

func TestCancelCompensatesAndEndsCancelled(t *testing.T) {
	slow := workflows.RetryPolicy{MaxAttempts: 50, InitialInterval: 100 * time.Millisecond, MaxInterval: 100 * time.Millisecond, Multiplier: 1}
	e := orders.Register(engine.New(engine.Options{DataDir: t.TempDir(), AdminAddr: engine.AdminOff, Logger: quietLogger()}), slow)
	runEngine(t, e)
	id := startOrder(t, e, orders.Input{OrderID: "o-cancel", SKU: "lamp", Qty: 1, Amount: 20, Address: orders.Unreachable})
	// Wait until shipping is being retried, then cancel.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := e.GetSaga(context.Background(), id)
		if err == nil && len(stepEvents(s, "ship-order")) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shipping never started: %+v %v", s, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := e.CancelSaga(context.Background(), id, "customer changed their mind"); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	s := waitSaga(t, e, id)
	if s.Status != workflows.StatusCancelled {
		t.Fatalf("status = %s, want cancelled", s.Status)
	}
	checkEffects(t, e.Store(), "o-cancel", shippingFailedEffects)
	if err := e.CancelSaga(context.Background(), id, ""); !errors.Is(err, engine.ErrSagaFinished) {
		t.Errorf("cancel of a cancelled saga: err = %v, want ErrSagaFinished", err)
	}
}

func TestListFiltersByStatusAndPages(t *testing.T) {
	e := newOrdersEngine(t, engine.Options{})
	var ids []string
	for i := range 5 {
		ids = append(ids, startOrder(t, e, orders.Input{OrderID: fmt.Sprintf("o-list-%d", i), SKU: "x", Qty: 1, Amount: 1, Address: "a"}))
	}
	bad := startOrder(t, e, orders.Input{OrderID: "o-list-bad", SKU: "x", Qty: 1, Amount: orders.MaxAmount + 1, Address: "a"})
	for _, id := range append(ids, bad) {
		waitSaga(t, e, id)
	}
	ctx := context.Background()
	completed, next, err := e.ListSagas(ctx, engine.ListRequest{Status: []workflows.Status{workflows.StatusCompleted}})
	if err != nil || next != "" || len(completed) != 5 {
		t.Fatalf("completed: %d sagas, next %q, err %v; want 5, no next page", len(completed), next, err)
	}
	comp, _, err := e.ListSagas(ctx, engine.ListRequest{Status: []workflows.Status{workflows.StatusCompensated}})
	if err != nil || len(comp) != 1 || comp[0].ID != bad {
		t.Fatalf("compensated = %+v, err %v; want just %s", comp, err, bad)
	}
	var all []engine.SagaSummary
	after := ""
	for range 10 {
		page, next, err := e.ListSagas(ctx, engine.ListRequest{After: after, Limit: 4})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		after = next
	}
	if len(all) != 6 {
		t.Errorf("paging returned %d sagas, want 6", len(all))
	}
	if _, _, err := e.ListSagas(ctx, engine.ListRequest{Status: []workflows.Status{"bogus"}}); !errors.Is(err, engine.ErrInvalidRequest) {
		t.Errorf("bogus status: err = %v, want ErrInvalidRequest", err)
	}
}

func TestStartIsIdempotentOnSagaID(t *testing.T) {
	e := newOrdersEngine(t, engine.Options{})
	input, _ := json.Marshal(orders.Input{OrderID: "o-idem", SKU: "x", Qty: 1, Amount: 1, Address: "a"})
	req := engine.StartRequest{Workflow: orders.WorkflowName, Input: input, ID: "fixed-id"}
	for range 3 {
		id, err := e.StartSaga(context.Background(), req)
		if err != nil || id != "fixed-id" {
			t.Fatalf("start = %q, %v", id, err)
		}
	}
	waitSaga(t, e, "fixed-id")
	checkEffects(t, e.Store(), "o-idem", completedEffects)
}

func TestRegistrationErrorsNameTheProblem(t *testing.T) {
	bad := workflows.New("broken", 1, func(in struct{}) (struct{}, error) { return struct{}{}, nil }).
		Send("a", workflows.CommandStep[struct{}]{Service: "svc", Command: func(*struct{}) (workflows.Cmd, error) { return workflows.Cmd{}, nil }}).
		Send("a", workflows.CommandStep[struct{}]{})
	e := engine.New(engine.Options{Logger: quietLogger()}).Register(bad, 42)
	err := e.Err()
	if !errors.Is(err, workflows.ErrInvalidDefinition) {
		t.Fatalf("err = %v, want ErrInvalidDefinition", err)
	}
	for _, want := range []string{`step 2 "a": name already used by step 1`, `step 2 "a": command step has no Service`, "int is not a workflow"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if runErr := e.Run(context.Background()); runErr == nil {
		t.Error("Run with registration errors succeeded")
	}
	// An aggregate whose message types are not registered is refused.
	e2 := engine.New(engine.Options{Logger: quietLogger()}).Register(orders.Inventory())
	if err := e2.Err(); err == nil || !errors.Is(err, message.ErrUnknownType) {
		t.Errorf("aggregate with unregistered types: err = %v, want ErrUnknownType", err)
	}
}
