package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/workflows"
)

// These tests run the step kinds beyond command and local through a real
// engine: signals through the admin API, events routed to a waiting saga,
// durable delays across a restart, child sagas, versioning and cancel.

// approvalState is the state of the test sagas built on the order demo.
type approvalState struct {
	orders.State
	ApprovedBy string `json:"approved_by,omitempty"`
	Version    string `json:"version,omitempty"`
	Arrived    int    `json:"arrived,omitempty"`
	Label      string `json:"label,omitempty"`
}

func initApproval(in orders.Input) (approvalState, error) {
	if in.OrderID == "" {
		return approvalState{}, errors.New("order_id is required")
	}
	return approvalState{State: orders.State{Input: in}}, nil
}

func reserveCmd() workflows.CommandStep[approvalState] {
	return workflows.CommandStep[approvalState]{
		Service: orders.InventoryService,
		Command: func(s *approvalState) (workflows.Cmd, error) {
			return workflows.Cmd{Key: s.OrderID, Body: orders.ReserveStock{OrderID: s.OrderID, SKU: s.SKU, Qty: s.Qty}}, nil
		},
		Compensate: func(s *approvalState) (workflows.Cmd, error) {
			return workflows.Cmd{Key: s.OrderID, Body: orders.ReleaseStock{OrderID: s.OrderID}}, nil
		},
		Timeout: 10 * time.Second,
	}
}

func chargeCmd() workflows.CommandStep[approvalState] {
	return workflows.CommandStep[approvalState]{
		Service: orders.PaymentService,
		Command: func(s *approvalState) (workflows.Cmd, error) {
			return workflows.Cmd{Key: s.OrderID, Body: orders.ChargePayment{OrderID: s.OrderID, Amount: s.Amount}}, nil
		},
		OnReply: workflows.Reply(func(s *approvalState, r *orders.PaymentCharged) error { s.ChargeID = r.ChargeID; return nil }),
		Compensate: func(s *approvalState) (workflows.Cmd, error) {
			return workflows.Cmd{Key: s.OrderID, Body: orders.RefundPayment{OrderID: s.OrderID}}, nil
		},
		Timeout: 10 * time.Second,
	}
}

func shipCmd() workflows.CommandStep[approvalState] {
	return workflows.CommandStep[approvalState]{
		Service: orders.ShippingService,
		Command: func(s *approvalState) (workflows.Cmd, error) {
			return workflows.Cmd{Key: s.OrderID, Body: orders.ShipOrder{OrderID: s.OrderID, Address: s.Address}}, nil
		},
		OnReply: workflows.Reply(func(s *approvalState, r *orders.OrderShipped) error { s.TrackingNo = r.TrackingNo; return nil }),
		Timeout: 10 * time.Second,
	}
}

// approvalWorkflow reserves stock, waits for an "approved" signal, then
// charges and ships in parallel.
func approvalWorkflow(name string, version int) *workflows.Definition[orders.Input, approvalState] {
	return workflows.New(name, version, initApproval).
		Send("reserve-stock", reserveCmd()).
		Await("approval", workflows.SignalStep[approvalState]{
			Signal: "approved", Timeout: time.Hour,
			OnSignal: workflows.Payload(func(s *approvalState, p *struct {
				By string `json:"by"`
			}) error {
				s.ApprovedBy = p.By
				return nil
			}),
		}).
		Parallel("charge-and-ship", workflows.All,
			workflows.Branch[approvalState]{Name: "charge-payment", Step: chargeCmd()},
			workflows.Branch[approvalState]{Name: "ship-order", Step: shipCmd()},
		).
		Do("stamp", workflows.LocalStep[approvalState]{Run: func(_ context.Context, s *approvalState) error {
			s.Version = "v" + string(rune('0'+version))
			return nil
		}})
}

// kindsEngine builds an engine with the order demo's aggregates and wfs.
func kindsEngine(t *testing.T, opts engine.Options, wfs ...any) *engine.Engine {
	t.Helper()
	if opts.AdminAddr == "" {
		opts.AdminAddr = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if opts.DataDir == "" && opts.Store == nil {
		opts.DataDir = t.TempDir()
	}
	e := engine.New(opts).Register(orders.Messages()...).Register(orders.Inventory(), orders.Payments(), orders.Shipping()).Register(wfs...)
	if err := e.Err(); err != nil {
		t.Fatalf("register: %v", err)
	}
	return e
}

// runStoppable runs e and returns a function that stops it and waits.
func runStoppable(t *testing.T, e *engine.Engine) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("engine stopped with error: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("engine did not stop within 15s")
		}
	}
	t.Cleanup(stop)
	select {
	case err := <-done:
		t.Fatalf("engine stopped before ready: %v", err)
	case <-e.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("engine not ready within 10s")
	}
	return stop
}

func startWF(t *testing.T, e *engine.Engine, wf string, in orders.Input) string {
	t.Helper()
	input, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.StartSaga(context.Background(), engine.StartRequest{Workflow: wf, Input: input, CorrelationID: in.OrderID})
	if err != nil {
		t.Fatalf("start %s: %v", wf, err)
	}
	return id
}

// waitFor polls saga id until cond holds (at most 20s).
func waitFor(t *testing.T, e *engine.Engine, id, what string, cond func(engine.Saga) bool) engine.Saga {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := e.GetSaga(context.Background(), id)
		if err == nil && cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("saga %s: %s not reached within 20s (status %s, step %q, err %v)", id, what, s.Status, s.Step, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waiting(step string) func(engine.Saga) bool {
	return func(s engine.Saga) bool {
		return s.Status == workflows.StatusRunning && s.Step == step && countEvents(s.History, workflows.EventStepWaiting, step) > 0
	}
}

func countEvents(h []workflows.Record, event, step string) int {
	n := 0
	for _, r := range h {
		if r.Event == event && (step == "" || r.Step == step) {
			n++
		}
	}
	return n
}

func decodeApproval(t *testing.T, s engine.Saga) approvalState {
	t.Helper()
	var st approvalState
	if err := json.Unmarshal(s.State, &st); err != nil {
		t.Fatalf("decode state of %s: %v", s.ID, err)
	}
	return st
}

func TestSignalThroughTheAdminAPIDrivesAWaitingSaga(t *testing.T) {
	forEachStore(t, func(t *testing.T, st testStore) {
		e := kindsEngine(t, st.options(t), approvalWorkflow("orders.Approval", 1))
		runStoppable(t, e)
		id := startWF(t, e, "orders.Approval", orders.Input{OrderID: "o-sig", SKU: "s", Qty: 1, Amount: 5, Address: "home"})
		waitFor(t, e, id, "waiting for approval", waiting("approval"))
		// Another signal is recorded and leaves the wait in place.
		if code, body := call(t, e, "POST", "/v1/sagas/"+id+"/signal", engine.SignalRequest{Name: "other"}, nil, nil); code != 202 {
			t.Fatalf("signal = %d %s", code, body)
		}
		waitFor(t, e, id, "other signal recorded", func(s engine.Saga) bool {
			return countEvents(s.History, workflows.EventSignalReceived, "") == 1
		})
		if code, body := call(t, e, "POST", "/v1/sagas/"+id+"/signal", engine.SignalRequest{Name: "approved", Payload: json.RawMessage(`{"by":"ops"}`)}, nil, nil); code != 202 {
			t.Fatalf("signal = %d %s", code, body)
		}
		s := waitSaga(t, e, id)
		if s.Status != workflows.StatusCompleted {
			t.Fatalf("status = %s (%s), want completed", s.Status, s.Error)
		}
		got := decodeApproval(t, s)
		if got.ApprovedBy != "ops" || got.ChargeID == "" || got.TrackingNo == "" || got.Version != "v1" {
			t.Errorf("state = %+v, want the approval and both branches' replies", got)
		}
	})
}

func TestCancelThroughTheAdminAPIAbandonsAWaitAndCompensates(t *testing.T) {
	e := kindsEngine(t, engine.Options{}, approvalWorkflow("orders.Approval", 1))
	runStoppable(t, e)
	id := startWF(t, e, "orders.Approval", orders.Input{OrderID: "o-cancel", SKU: "s", Qty: 1, Amount: 5, Address: "home"})
	waitFor(t, e, id, "waiting for approval", waiting("approval"))
	if code, body := call(t, e, "POST", "/v1/sagas/"+id+"/cancel", map[string]string{"reason": "customer left"}, nil, nil); code != 202 {
		t.Fatalf("cancel = %d %s", code, body)
	}
	s := waitSaga(t, e, id)
	if s.Status != workflows.StatusCancelled {
		t.Fatalf("status = %s, want cancelled", s.Status)
	}
	if countEvents(s.History, workflows.EventStepAbandoned, "approval") != 1 || countEvents(s.History, workflows.EventCompensationSucceeded, "reserve-stock") != 1 {
		t.Errorf("history does not show the wait abandoned and the reservation undone: %+v", s.History)
	}
	if types := eventTypes(t, e.Store(), "inventory.Reservation", "o-cancel"); !equalStrings(types, []string{"inventory.StockReserved.v1", "inventory.StockReleased.v1"}) {
		t.Errorf("inventory events = %v", types)
	}
}

// stockArrived is an event published by another service.
type stockArrived struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

const typeStockArrived = "warehouse.StockArrived.v1"

func eventWorkflow() *workflows.Definition[orders.Input, approvalState] {
	return workflows.New("orders.AwaitStock", 1, initApproval).
		AwaitEvent("stock-arrives", workflows.EventStep[approvalState]{
			Event: typeStockArrived, Timeout: time.Hour,
			Match: workflows.Matching(func(s *approvalState, e *stockArrived) bool { return e.SKU == s.SKU }),
			OnEvent: workflows.Payload(func(s *approvalState, e *stockArrived) error {
				s.Arrived += e.Qty
				return nil
			}),
		}).
		Send("reserve-stock", reserveCmd())
}

func TestEventsAreRoutedToTheSagaWaitingForThem(t *testing.T) {
	forEachStore(t, testEventsAreRouted)
}

func testEventsAreRouted(t *testing.T, st testStore) {
	opts := st.options(t)
	tr := inmem.New(inmem.WithPartitions(16), inmem.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = tr.Close() })
	opts.Transport = tr
	e := kindsEngine(t, opts, engine.Message[stockArrived](typeStockArrived), eventWorkflow())
	runStoppable(t, e)
	bySaga := startWF(t, e, "orders.AwaitStock", orders.Input{OrderID: "o-ev1", SKU: "pen", Qty: 1})
	byCorr := startWF(t, e, "orders.AwaitStock", orders.Input{OrderID: "o-ev2", SKU: "ink", Qty: 1})
	waitFor(t, e, bySaga, "waiting", waiting("stock-arrives"))
	waitFor(t, e, byCorr, "waiting", waiting("stock-arrives"))
	publish := func(body stockArrived, sagaID, corr string) message.Envelope {
		t.Helper()
		ev, err := e.Registry().New(message.KindEvent, "warehouse-1", &body)
		if err != nil {
			t.Fatal(err)
		}
		ev.Source, ev.SagaID, ev.CorrelationID, ev.OccurredAt = "warehouse", sagaID, corr, time.Now()
		if err := tr.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	// A predicate refuses the wrong SKU; the saga keeps waiting.
	publish(stockArrived{SKU: "other", Qty: 9}, bySaga, "")
	waitFor(t, e, bySaga, "unmatched event recorded", func(s engine.Saga) bool {
		return countEvents(s.History, workflows.EventEventUnmatched, "") == 1 && s.Step == "stock-arrives"
	})
	dup := publish(stockArrived{SKU: "pen", Qty: 3}, bySaga, "")
	publish(stockArrived{SKU: "ink", Qty: 4}, "", "o-ev2")
	for id, want := range map[string]int{bySaga: 3, byCorr: 4} {
		s := waitSaga(t, e, id)
		if s.Status != workflows.StatusCompleted || decodeApproval(t, s).Arrived != want {
			t.Errorf("saga %s: status %s, arrived %d, want completed with %d", id, s.Status, decodeApproval(t, s).Arrived, want)
		}
	}
	// The same event again (a redelivery) is routed under the same ID and
	// recognised by the saga as handled: it changes nothing.
	if err := tr.Publish(context.Background(), dup); err != nil {
		t.Fatal(err)
	}
	orphan := publish(stockArrived{SKU: "pen", Qty: 1}, "", "no-such-order")
	deadline := time.Now().Add(20 * time.Second)
	for {
		dls, err := e.DeadLetters(context.Background(), engine.DeadLetterFilter{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, dl := range dls {
			if dl.Message.ID == orphan.ID && strings.Contains(dl.Reason, "no saga") {
				found++
			}
		}
		if found == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the event for no saga was not parked with a reason: %+v", dls)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s, _ := e.GetSaga(context.Background(), bySaga); countEvents(s.History, workflows.EventStepSucceeded, "stock-arrives") != 1 || len(s.History) != 9 || decodeApproval(t, s).Arrived != 3 {
		t.Errorf("a redelivered event was applied again: %+v", s.History)
	}
}

// delayWorkflow waits on a durable timer between two local steps.
func delayWorkflow(delay time.Duration) *workflows.Definition[orders.Input, approvalState] {
	return workflows.New("orders.CoolOff", 1, initApproval).
		Send("reserve-stock", reserveCmd()).
		Delay("cool-off", delay).
		Do("stamp", workflows.LocalStep[approvalState]{Run: func(_ context.Context, s *approvalState) error {
			s.Version = "done"
			return nil
		}})
}

func TestADelayThatFellDueWhileTheEngineWasDownFiresOnceAfterRestart(t *testing.T) {
	forEachStore(t, func(t *testing.T, st testStore) {
		const delay = 1500 * time.Millisecond
		e1 := kindsEngine(t, st.options(t), delayWorkflow(delay))
		stop := runStoppable(t, e1)
		id := startWF(t, e1, "orders.CoolOff", orders.Input{OrderID: "o-delay", SKU: "s", Qty: 1})
		s := waitFor(t, e1, id, "in the delay", waiting("cool-off"))
		stop()
		time.Sleep(delay + 500*time.Millisecond) // the timer falls due while no engine runs

		e2 := kindsEngine(t, st.options(t), delayWorkflow(delay))
		runStoppable(t, e2)
		s = waitSaga(t, e2, id)
		if s.Status != workflows.StatusCompleted || decodeApproval(t, s).Version != "done" {
			t.Fatalf("after restart: status %s (%s), want completed", s.Status, s.Error)
		}
		if n := countEvents(s.History, workflows.EventStepSucceeded, "cool-off"); n != 1 {
			t.Errorf("the delay succeeded %d times, want once: %+v", n, s.History)
		}
		if n := countEvents(s.History, workflows.EventStepSucceeded, "stamp"); n != 1 {
			t.Errorf("the step after the delay ran %d times", n)
		}
	})
}

func TestAWaitTimeoutThatFellDueWhileTheEngineWasDownCompensatesAfterRestart(t *testing.T) {
	wf := func() *workflows.Definition[orders.Input, approvalState] {
		return workflows.New("orders.Timeout", 1, initApproval).
			Send("reserve-stock", reserveCmd()).
			Await("approval", workflows.SignalStep[approvalState]{Signal: "approved", Timeout: time.Second})
	}
	dir := t.TempDir()
	e1 := kindsEngine(t, engine.Options{DataDir: dir}, wf())
	stop := runStoppable(t, e1)
	id := startWF(t, e1, "orders.Timeout", orders.Input{OrderID: "o-to", SKU: "s", Qty: 1})
	waitFor(t, e1, id, "waiting", waiting("approval"))
	stop()
	time.Sleep(1500 * time.Millisecond)
	e2 := kindsEngine(t, engine.Options{DataDir: dir}, wf())
	runStoppable(t, e2)
	s := waitSaga(t, e2, id)
	if s.Status != workflows.StatusCompensated || !strings.Contains(s.Error, `no signal "approved"`) {
		t.Fatalf("status %s (%s), want compensated after the wait timed out", s.Status, s.Error)
	}
	if n := countEvents(s.History, workflows.EventStepFailed, "approval"); n != 1 {
		t.Errorf("the wait failed %d times, want once", n)
	}
}

// labelWorkflow is the child: it reserves stock and stamps a label.
func labelWorkflow() *workflows.Definition[orders.Input, approvalState] {
	return workflows.New("labels.Print", 1, initApproval).
		Send("reserve-stock", reserveCmd()).
		Do("label", workflows.LocalStep[approvalState]{Run: func(_ context.Context, s *approvalState) error {
			s.Label = "L-" + s.OrderID
			return nil
		}})
}

// parentWorkflow runs labelWorkflow as a child, then charges.
func parentWorkflow() *workflows.Definition[orders.Input, approvalState] {
	return workflows.New("orders.WithChild", 1, initApproval).
		Child("print-label", workflows.ChildStep[approvalState]{
			Workflow: "labels.Print",
			Input: func(s *approvalState) (any, error) {
				in := s.Input
				in.OrderID = "child-" + s.OrderID
				return in, nil
			},
			OnDone: func(s *approvalState, child json.RawMessage) error {
				var c approvalState
				if err := json.Unmarshal(child, &c); err != nil {
					return err
				}
				s.Label = c.Label
				return nil
			},
			Timeout: time.Minute,
		}).
		Send("charge-payment", chargeCmd())
}

func TestChildSagaRunsAndIsCompensatedWithItsParent(t *testing.T) {
	forEachStore(t, func(t *testing.T, st testStore) {
		e := kindsEngine(t, st.options(t), labelWorkflow(), parentWorkflow())
		runStoppable(t, e)
		ok := startWF(t, e, "orders.WithChild", orders.Input{OrderID: "o-child", SKU: "s", Qty: 1, Amount: 5})
		s := waitSaga(t, e, ok)
		if s.Status != workflows.StatusCompleted || decodeApproval(t, s).Label != "L-child-o-child" {
			t.Fatalf("parent: status %s (%s), state %s; want completed with the child's label", s.Status, s.Error, s.State)
		}
		child, err := e.GetSaga(context.Background(), workflows.ChildID(ok, "print-label"))
		if err != nil || child.Status != workflows.StatusCompleted || child.Workflow != "labels.Print" {
			t.Fatalf("child: %+v, %v", child, err)
		}

		// A payment over the limit fails the parent after the child
		// completed: compensating the child step undoes the child.
		bad := startWF(t, e, "orders.WithChild", orders.Input{OrderID: "o-child2", SKU: "s", Qty: 1, Amount: orders.MaxAmount + 1})
		s = waitSaga(t, e, bad)
		if s.Status != workflows.StatusCompensated {
			t.Fatalf("parent: status %s (%s), want compensated", s.Status, s.Error)
		}
		child = waitSaga(t, e, workflows.ChildID(bad, "print-label"))
		if child.Status != workflows.StatusCancelled || countEvents(child.History, workflows.EventCompensationSucceeded, "reserve-stock") != 1 {
			t.Errorf("child: status %s, history %+v; want it cancelled with its reservation released", child.Status, child.History)
		}
		if types := eventTypes(t, e.Store(), "inventory.Reservation", "child-o-child2"); !equalStrings(types, []string{"inventory.StockReserved.v1", "inventory.StockReleased.v1"}) {
			t.Errorf("child's inventory events = %v", types)
		}
	})
}

func TestChildOfAnUnknownWorkflowFailsTheParentStep(t *testing.T) {
	e := kindsEngine(t, engine.Options{}, parentWorkflow())
	runStoppable(t, e)
	id := startWF(t, e, "orders.WithChild", orders.Input{OrderID: "o-nochild", SKU: "s", Qty: 1, Amount: 5})
	s := waitSaga(t, e, id)
	if s.Status != workflows.StatusCompensated || !strings.Contains(s.Error, `child workflow "labels.Print" is not registered`) {
		t.Fatalf("status %s (%s), want compensated naming the missing workflow", s.Status, s.Error)
	}
}

func TestRunningInstancesFinishOnTheirVersion(t *testing.T) {
	forEachStore(t, func(t *testing.T, st testStore) {
		v1 := approvalWorkflow("orders.Versioned", 1)
		// v2 needs no approval.
		v2 := workflows.New("orders.Versioned", 2, initApproval).
			Send("reserve-stock", reserveCmd()).
			Do("stamp", workflows.LocalStep[approvalState]{Run: func(_ context.Context, s *approvalState) error {
				s.Version = "v2"
				return nil
			}})
		e1 := kindsEngine(t, st.options(t), v1)
		stop := runStoppable(t, e1)
		old := startWF(t, e1, "orders.Versioned", orders.Input{OrderID: "o-v1", SKU: "s", Qty: 1, Amount: 5, Address: "home"})
		waitFor(t, e1, old, "waiting for approval", waiting("approval"))

		// v2 is registered while v1 runs: new sagas start on v2.
		if err := e1.Register(v2).Err(); err != nil {
			t.Fatal(err)
		}
		live := startWF(t, e1, "orders.Versioned", orders.Input{OrderID: "o-v2", SKU: "s", Qty: 1})
		if s := waitSaga(t, e1, live); s.Version != 2 || s.Status != workflows.StatusCompleted || decodeApproval(t, s).Version != "v2" {
			t.Fatalf("new saga: v%d %s %s, want v2 completed", s.Version, s.Status, s.State)
		}
		stop()

		// After a restart with both versions, the old saga resumes on v1.
		e2 := kindsEngine(t, st.options(t), approvalWorkflow("orders.Versioned", 1), v2)
		runStoppable(t, e2)
		if err := e2.SignalSaga(context.Background(), old, engine.SignalRequest{Name: "approved", Payload: json.RawMessage(`{"by":"ann"}`)}); err != nil {
			t.Fatal(err)
		}
		s := waitSaga(t, e2, old)
		if s.Version != 1 || s.Status != workflows.StatusCompleted || decodeApproval(t, s).Version != "v1" || countEvents(s.History, workflows.EventStepSucceeded, "charge-and-ship") != 1 {
			t.Fatalf("old saga: v%d %s (%s) state %s; want it finished on v1's steps", s.Version, s.Status, s.Error, s.State)
		}
		if s := waitSaga(t, e2, startWF(t, e2, "orders.Versioned", orders.Input{OrderID: "o-v2b", SKU: "s", Qty: 1})); s.Version != 2 {
			t.Errorf("a saga started after the restart runs v%d, want v2", s.Version)
		}
	})
}

func TestWorkflowDiagramShowsTheNewKinds(t *testing.T) {
	e := kindsEngine(t, engine.Options{}, approvalWorkflow("orders.Approval", 1), labelWorkflow(), parentWorkflow(), delayWorkflow(time.Second))
	runStoppable(t, e)
	for name, want := range map[string][]string{
		"orders.Approval":  {"signal: approved", "charge-and-ship", "join", "undo reserve-stock"},
		"orders.WithChild": {"child: labels.Print", "undo print-label"},
		"orders.CoolOff":   {"delay 1s"},
	} {
		var wf engine.WorkflowInfo
		if code, body := call(t, e, "GET", "/v1/workflows/"+name, nil, nil, &wf); code != 200 {
			t.Fatalf("GET %s = %d %s", name, code, body)
		}
		for _, w := range want {
			if !strings.Contains(wf.Mermaid, w) {
				t.Errorf("%s diagram lacks %q:\n%s", name, w, wf.Mermaid)
			}
		}
	}
}

func TestCancelOfAParentCancelsTheChildItWaitsFor(t *testing.T) {
	child := workflows.New("labels.Wait", 1, initApproval).
		Send("reserve-stock", reserveCmd()).
		Await("printer", workflows.SignalStep[approvalState]{Signal: "printed"})
	parent := workflows.New("orders.WaitChild", 1, initApproval).
		Child("print-label", workflows.ChildStep[approvalState]{Workflow: "labels.Wait", Input: func(s *approvalState) (any, error) { return s.Input, nil }})
	e := kindsEngine(t, engine.Options{}, child, parent)
	runStoppable(t, e)
	id := startWF(t, e, "orders.WaitChild", orders.Input{OrderID: "o-pc", SKU: "s", Qty: 1})
	childID := workflows.ChildID(id, "print-label")
	waitFor(t, e, childID, "child waiting", waiting("printer"))
	if code, body := call(t, e, "POST", "/v1/sagas/"+id+"/cancel", map[string]string{"reason": "stop"}, nil, nil); code != 202 {
		t.Fatalf("cancel = %d %s", code, body)
	}
	if s := waitSaga(t, e, id); s.Status != workflows.StatusCancelled || countEvents(s.History, workflows.EventCompensationSucceeded, "print-label") != 1 {
		t.Fatalf("parent: %s, history %+v; want cancelled with the child step undone", s.Status, s.History)
	}
	c := waitSaga(t, e, childID)
	if c.Status != workflows.StatusCancelled || countEvents(c.History, workflows.EventStepAbandoned, "printer") != 1 {
		t.Errorf("child: %s, history %+v; want cancelled with its wait abandoned", c.Status, c.History)
	}
	if types := eventTypes(t, e.Store(), "inventory.Reservation", "o-pc"); !equalStrings(types, []string{"inventory.StockReserved.v1", "inventory.StockReleased.v1"}) {
		t.Errorf("child's inventory events = %v", types)
	}
}

func TestADeadlineThatPassedWhileTheEngineWasDownCompensatesAfterRestart(t *testing.T) {
	forEachStore(t, func(t *testing.T, st testStore) {
		wf := func() *workflows.Definition[orders.Input, approvalState] {
			return workflows.New("orders.Deadline", 1, initApproval).
				Send("reserve-stock", reserveCmd()).
				Await("approval", workflows.SignalStep[approvalState]{Signal: "approved"}). // no timeout of its own
				Deadline(time.Second)
		}
		e1 := kindsEngine(t, st.options(t), wf())
		stop := runStoppable(t, e1)
		id := startWF(t, e1, "orders.Deadline", orders.Input{OrderID: "o-dl", SKU: "s", Qty: 1})
		waitFor(t, e1, id, "waiting", waiting("approval"))
		stop()
		time.Sleep(1500 * time.Millisecond)
		e2 := kindsEngine(t, st.options(t), wf())
		runStoppable(t, e2)
		s := waitSaga(t, e2, id)
		if s.Status != workflows.StatusCompensated || !strings.Contains(s.Error, "deadline of 1s passed") {
			t.Fatalf("status %s (%s), want compensated by the deadline", s.Status, s.Error)
		}
		if countEvents(s.History, workflows.EventDeadlinePassed, "") != 1 || countEvents(s.History, workflows.EventCompensationSucceeded, "reserve-stock") != 1 {
			t.Errorf("history: %+v", s.History)
		}
	})
}
