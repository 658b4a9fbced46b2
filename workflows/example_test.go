package workflows_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/sagaflow/sagaflow/workflows"
)

// A two-step order saga: reserve the stock, then charge the customer. If
// the charge is refused, the reservation is released.
func Example() {
	type PlaceOrder struct {
		OrderID string `json:"order_id"`
		SKU     string `json:"sku"`
		Amount  int    `json:"amount"`
	}
	type Order struct {
		PlaceOrder
		ChargeID string `json:"charge_id"`
	}
	// Commands and replies are plain structs, registered with the engine
	// under versioned type names such as "inventory.ReserveStock.v1".
	type ReserveStock struct{ OrderID, SKU string }
	type ReleaseStock struct{ OrderID string }
	type ChargeCard struct {
		OrderID string
		Amount  int
	}
	type CardCharged struct{ ChargeID string }

	wf := workflows.New("orders.PlaceOrder", 1, func(in PlaceOrder) (Order, error) {
		if in.OrderID == "" {
			return Order{}, errors.New("order_id is required")
		}
		return Order{PlaceOrder: in}, nil
	}).
		Send("reserve-stock", workflows.CommandStep[Order]{
			Service: "inventory",
			Command: func(o *Order) (workflows.Cmd, error) {
				return workflows.Cmd{Key: o.OrderID, Body: ReserveStock{OrderID: o.OrderID, SKU: o.SKU}}, nil
			},
			Compensate: func(o *Order) (workflows.Cmd, error) {
				return workflows.Cmd{Key: o.OrderID, Body: ReleaseStock{OrderID: o.OrderID}}, nil
			},
			Timeout: 5 * time.Second,
		}).
		Send("charge-card", workflows.CommandStep[Order]{
			Service: "payments",
			Command: func(o *Order) (workflows.Cmd, error) {
				return workflows.Cmd{Key: o.OrderID, Body: ChargeCard{OrderID: o.OrderID, Amount: o.Amount}}, nil
			},
			OnReply: workflows.Reply(func(o *Order, r *CardCharged) error {
				o.ChargeID = r.ChargeID
				return nil
			}),
			Retry: workflows.RetryPolicy{MaxAttempts: 3, InitialInterval: 200 * time.Millisecond, Multiplier: 2, Jitter: 0.2},
		})

	// The engine validates a definition when it is registered.
	if err := wf.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s v%d\n", wf.Name(), wf.Version())
	for i, s := range wf.Steps() {
		fmt.Printf("%d. %s: %s to %s, attempts: %d, compensable: %v\n", i+1, s.Name, s.Kind, s.Service, max(s.Retry.MaxAttempts, 1), s.Compensable)
	}
	// Output:
	// orders.PlaceOrder v1
	// 1. reserve-stock: command to inventory, attempts: 1, compensable: true
	// 2. charge-card: command to payments, attempts: 3, compensable: false
}

// Validate reports every problem at once, each with the step it concerns.
func Example_invalid() {
	type State struct{}
	wf := workflows.New("orders.Broken", 1, func(struct{}) (State, error) { return State{}, nil }).
		Send("charge", workflows.CommandStep[State]{Service: "payments"}).
		Do("charge", workflows.LocalStep[State]{Retry: workflows.RetryPolicy{Multiplier: 0.5}})
	err := wf.Validate()
	fmt.Println(errors.Is(err, workflows.ErrInvalidDefinition))
	fmt.Println(err)
	// Output:
	// true
	// invalid workflow definition: workflow "orders.Broken" v1: step 1 "charge": command step has no Command function
	// step 2 "charge": name already used by step 1
	// step 2 "charge": local step has no Run function
	// step 2 "charge": retry policy: multiplier 0.5 is below 1
}

// Mermaid draws a workflow: its steps in order and, dashed, the
// compensations a failure runs in reverse.
func ExampleMermaid() {
	type State struct{ OrderID string }
	cmd := func(s *State) (workflows.Cmd, error) { return workflows.Cmd{Key: s.OrderID, Body: struct{}{}}, nil }
	wf := workflows.New("orders.PlaceOrder", 2, func(s State) (State, error) { return s, nil }).
		Send("reserve-stock", workflows.CommandStep[State]{Service: "inventory", Command: cmd, Compensate: cmd}).
		Send("charge-card", workflows.CommandStep[State]{Service: "payments", Command: cmd, Compensate: cmd}).
		Send("ship", workflows.CommandStep[State]{Service: "shipping", Command: cmd})
	fmt.Print(workflows.Mermaid(wf))
	// Output:
	// flowchart TD
	//     start(["start<br/>orders.PlaceOrder v2"])
	//     s1["reserve-stock<br/>command: inventory"]
	//     s2["charge-card<br/>command: payments"]
	//     s3["ship<br/>command: shipping"]
	//     completed(["completed"])
	//     start --> s1
	//     s1 --> s2
	//     s2 --> s3
	//     s3 --> completed
	//     c1["undo reserve-stock"]
	//     c2["undo charge-card"]
	//     compensated(["compensated"])
	//     s1 -.-> c1
	//     s2 -.-> c2
	//     c2 --> c1
	//     c1 --> compensated
}
