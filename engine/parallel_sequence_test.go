package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/workflows"
)

// sequenceWorkflow ships in parallel with a branch that reserves the
// stock and then charges the payment (a sequence of two commands).
func sequenceWorkflow() *workflows.Definition[orders.Input, approvalState] {
	ship := workflows.CommandStep[approvalState]{
		Service: orders.ShippingService,
		Command: func(s *approvalState) (workflows.Cmd, error) {
			return workflows.Cmd{Key: s.OrderID, Body: orders.ShipOrder{OrderID: s.OrderID, Address: s.Address}}, nil
		},
		OnReply: workflows.Reply(func(s *approvalState, r *orders.OrderShipped) error { s.TrackingNo = r.TrackingNo; return nil }),
		Retry:   workflows.RetryPolicy{MaxAttempts: 1},
		Timeout: 10 * time.Second,
	}
	return workflows.New("orders.SequenceBranch", 1, initApproval).
		Parallel("fulfil", workflows.All,
			workflows.Branch[approvalState]{Name: "reserve-stock", Step: reserveCmd(), Then: []workflows.Branch[approvalState]{
				{Name: "charge-payment", Step: chargeCmd()},
			}},
			workflows.Branch[approvalState]{Name: "ship-order", Step: ship},
		)
}

// TestParallelBranchSequenceThroughTheEngine: a branch of two commands
// runs step by step against the engine's aggregates beside its sibling;
// when its second step is declined, its first is undone.
func TestParallelBranchSequenceThroughTheEngine(t *testing.T) {
	tr := inmem.New(inmem.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = tr.Close() })
	e := kindsEngine(t, engine.Options{Transport: tr}, sequenceWorkflow())
	runStoppable(t, e)
	for _, c := range []struct {
		in         orders.Input
		wantStatus workflows.Status
		wantEvents map[string]int // "event step" -> count
	}{
		{orders.Input{OrderID: "o-seq1", SKU: "pen", Qty: 1, Amount: 10, Address: "1 Main St"}, workflows.StatusCompleted,
			map[string]int{"step.succeeded reserve-stock": 1, "step.succeeded charge-payment": 1, "step.succeeded ship-order": 1, "step.succeeded fulfil": 1}},
		{orders.Input{OrderID: "o-seq2", SKU: "pen", Qty: 1, Amount: orders.MaxAmount + 1, Address: "1 Main St"}, workflows.StatusCompensated,
			map[string]int{"step.succeeded reserve-stock": 1, "step.failed charge-payment": 1, "compensation.succeeded reserve-stock": 1, "compensation.started charge-payment": 0}},
	} {
		id := startWF(t, e, "orders.SequenceBranch", c.in)
		s := waitSaga(t, e, id)
		if s.Status != c.wantStatus {
			t.Fatalf("saga %s: %s (%s), want %s; history %+v", c.in.OrderID, s.Status, s.Error, c.wantStatus, s.History)
		}
		for ev, n := range c.wantEvents {
			var event, step string
			for i := range ev {
				if ev[i] == ' ' {
					event, step = ev[:i], ev[i+1:]
				}
			}
			if got := countEvents(s.History, event, step); got != n {
				t.Errorf("saga %s: %d %q records, want %d", c.in.OrderID, got, ev, n)
			}
		}
		if c.wantStatus == workflows.StatusCompleted {
			if st := decodeApproval(t, s); st.ChargeID == "" || st.TrackingNo == "" {
				t.Errorf("saga %s: state %+v, want the charge and the shipment", c.in.OrderID, st)
			}
		}
	}
	// The compensated order's stock was reserved, then released.
	if st, v, err := e.AggregateState(context.Background(), orders.InventoryService, "o-seq2"); err != nil || v != 2 {
		t.Errorf("stock o-seq2: %+v at version %d, %v; want a reservation and its release", st, v, err)
	}
}
