package workflows_test

import (
	"fmt"
	"time"

	"github.com/sagaflow/sagaflow/workflows"
)

// The step kinds beyond command and local: wait for an operator's
// signal, charge and ship in parallel (each branch compensated on its
// own), run a child saga for big orders only, wait a day on a durable
// timer, all within a saga-level deadline.
func Example_stepKinds() {
	type Order struct {
		OrderID    string `json:"order_id"`
		Amount     int    `json:"amount"`
		ApprovedBy string `json:"approved_by"`
	}
	type Approval struct {
		By string `json:"by"`
	}
	type ChargeCard struct{ OrderID string }
	type RefundCard struct{ OrderID string }
	type ShipOrder struct{ OrderID string }
	cmd := func(body func(o *Order) any) func(o *Order) (workflows.Cmd, error) {
		return func(o *Order) (workflows.Cmd, error) { return workflows.Cmd{Key: o.OrderID, Body: body(o)}, nil }
	}

	wf := workflows.New("orders.BigOrder", 2, func(in Order) (Order, error) { return in, nil }).
		Await("approval", workflows.SignalStep[Order]{
			Signal:  "approved", // POST /v1/sagas/{id}/signal {"name":"approved","payload":{"by":"ann"}}
			Timeout: 48 * time.Hour,
			OnSignal: workflows.Payload(func(o *Order, a *Approval) error {
				o.ApprovedBy = a.By
				return nil
			}),
		}).
		Parallel("charge-and-ship", workflows.All,
			workflows.Branch[Order]{Name: "charge", Step: workflows.CommandStep[Order]{
				Service:    "payments",
				Command:    cmd(func(o *Order) any { return ChargeCard{o.OrderID} }),
				Compensate: cmd(func(o *Order) any { return RefundCard{o.OrderID} }),
			}},
			workflows.Branch[Order]{Name: "ship", Step: workflows.CommandStep[Order]{
				Service: "shipping",
				Command: cmd(func(o *Order) any { return ShipOrder{o.OrderID} }),
			}},
		).
		When("big", func(o *Order) bool { return o.Amount > 1000 },
			workflows.Steps[Order]().Child("insure", workflows.ChildStep[Order]{
				Workflow: "insurance.Cover",
				Input:    func(o *Order) (any, error) { return map[string]any{"order_id": o.OrderID}, nil },
			})).
		Delay("cooling-off", 24*time.Hour).
		Deadline(7 * 24 * time.Hour)

	if err := wf.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range wf.Steps() {
		fmt.Println(s.Name, s.Kind)
	}
	// Output:
	// approval signal
	// charge-and-ship parallel
	// charge command
	// ship command
	// big if
	// insure child
	// cooling-off delay
}
