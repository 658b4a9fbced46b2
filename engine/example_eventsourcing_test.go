package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/engine"
)

// The README's event-sourcing example.

type RegisterCustomer struct {
	Customer string `json:"customer"`
	Email    string `json:"email"`
}

// CustomerRegistered is v2 of the event: v1 called the e-mail "mail".
type CustomerRegistered struct {
	Customer string `json:"customer" sagaflow:"subject"` // whose data this is
	Email    string `json:"email" sagaflow:"personal"`   // encrypted under the customer's key
	Source   string `json:"source"`
}

type Customer struct {
	Email  string `json:"email"`
	Source string `json:"source"`
}

// Example_eventSourcing registers an aggregate that snapshots every 100
// events, an upcaster for the v1 event, and reads the state at version 1
// after forgetting the customer.
func Example_eventSourcing() {
	customers := aggregate.New("crm", "crm.Customer", func(string) Customer { return Customer{} })
	aggregate.Handle(customers, func(s Customer, c *RegisterCustomer) ([]any, error) {
		return []any{CustomerRegistered{Customer: c.Customer, Email: c.Email, Source: "web"}}, nil
	})
	aggregate.Apply(customers, func(s Customer, e *CustomerRegistered) Customer {
		s.Email, s.Source = e.Email, e.Source
		return s
	})
	customers.SnapshotEvery(100)

	v1ToV2 := func(old json.RawMessage) (json.RawMessage, error) {
		var v1 struct{ Customer, Mail string }
		if err := json.Unmarshal(old, &v1); err != nil {
			return nil, err
		}
		return json.Marshal(CustomerRegistered{Customer: v1.Customer, Email: v1.Mail, Source: "import"})
	}

	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	e := engine.New(engine.Options{DataDir: dir, AdminAddr: engine.AdminOff, Logger: quietLogger()}).Register(
		engine.Message[RegisterCustomer]("crm.Register.v1"),
		engine.Message[CustomerRegistered]("crm.CustomerRegistered.v2"),
		engine.Upcaster("crm.CustomerRegistered", 1, v1ToV2),
		customers,
	)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	<-e.Ready()

	_, _ = e.Send(ctx, "crm", "c-1", &RegisterCustomer{Customer: "c-1", Email: "ada@example.org"}, nil)
	for {
		if v, err := e.AggregateStateAt(ctx, "crm", "c-1", engine.AggregateAt{Version: 1}); err == nil {
			fmt.Println(v.State.(Customer).Email)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = e.Forget(ctx, "c-1")
	v, _ := e.AggregateStateAt(ctx, "crm", "c-1", engine.AggregateAt{Version: 1})
	fmt.Println(v.State.(Customer).Email, v.State.(Customer).Source)
	stop()
	<-done
	// Output:
	// ada@example.org
	// [redacted] web
}
