// Package classification is the data-analysis service of the
// email-campaign example: it derives each customer's class (A, B or C)
// from the customer's order history, which it learns from the customer
// service's public CustomerOrderPlaced events (through an inbox), keeps in
// its own event-sourced aggregate, and publishes
// CustomerClassificationUpdated when, and only when, a class changes.
// An order it has counted before (a redelivered event) records nothing,
// so the published classes do not depend on redeliveries (I3).
package classification

import (
	"fmt"
	"log/slog"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/customers"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/inbox"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// Service is the queue the classification commands arrive on.
const Service = "classification"

// AggregateName is the classification aggregate's type name.
const AggregateName = "classification.CustomerScore"

// InboxQueue is the queue of the customer events the service reads.
const InboxQueue = "classification.inbox"

// Thresholds of the classes: a customer whose orders total at least AMin
// is an A customer, at least BMin a B customer, else a C customer.
const (
	AMin = 1000
	BMin = 200
)

// Classify returns the class of an order total.
func Classify(total int) string {
	switch {
	case total >= AMin:
		return "A"
	case total >= BMin:
		return "B"
	default:
		return "C"
	}
}

// RecordOrder counts an order of a customer.
type RecordOrder struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
}

// OrderScored is the internal event of a counted order: the new total and
// the class it gives.
type OrderScored struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
	Total   int    `json:"total"`
	Class   string `json:"class"`
	Changed bool   `json:"changed"`
}

// CustomerClassificationUpdated is the public event (the talk's
// CUSTOMER_CLASSIFICATION_UPDATED); the customer ID is the envelope's key.
type CustomerClassificationUpdated struct {
	Class string `json:"class"`
}

// State is a customer's score.
type State struct {
	Customer string          `json:"customer"`
	Total    int             `json:"total"`
	Class    string          `json:"class"`
	Orders   map[string]bool `json:"orders,omitempty"`
}

// Messages returns the service's own message registrations.
func Messages() []any {
	return []any{
		engine.Message[RecordOrder]("classification.RecordOrder.v1"),
		engine.Message[OrderScored]("classification.OrderScored.v1"),
		engine.Message[CustomerClassificationUpdated]("classification.public.CustomerClassificationUpdated.v1"),
	}
}

// Aggregate returns the score aggregate: one per customer.
func Aggregate() *aggregate.Definition[State] {
	d := aggregate.New(Service, AggregateName, func(id string) State { return State{Customer: id} })
	aggregate.Handle(d, func(s State, c *RecordOrder) ([]any, error) {
		if c.OrderID == "" || c.Amount <= 0 {
			return nil, fmt.Errorf("order %q of %d: need an ID and a positive amount", c.OrderID, c.Amount)
		}
		if s.Orders[c.OrderID] {
			return nil, nil
		}
		total := s.Total + c.Amount
		class := Classify(total)
		return []any{&OrderScored{OrderID: c.OrderID, Amount: c.Amount, Total: total, Class: class, Changed: class != s.Class}}, nil
	})
	aggregate.Apply(d, func(s State, e *OrderScored) State {
		if s.Orders == nil {
			s.Orders = map[string]bool{}
		}
		s.Orders[e.OrderID] = true
		s.Total, s.Class = e.Total, e.Class
		return s
	})
	aggregate.Publish(d, func(e *OrderScored) (*CustomerClassificationUpdated, error) {
		if !e.Changed {
			return nil, nil
		}
		return &CustomerClassificationUpdated{Class: e.Class}, nil
	})
	return d
}

// Setup registers the service's messages and aggregate on e.
func Setup(e *engine.Engine) *engine.Engine {
	return e.Register(customers.PublicMessages()...).Register(Messages()...).Register(Aggregate())
}

// Inbox returns the subscription that turns the customer service's
// CustomerOrderPlaced events into RecordOrder commands. send is usually
// the engine's Send.
func Inbox(tr transport.Transport, reg *message.Registry, send inbox.Sender, logger *slog.Logger) (*inbox.Inbox, error) {
	name, err := reg.TypeNameOf(&customers.CustomerOrderPlaced{})
	if err != nil {
		return nil, fmt.Errorf("classification inbox: %w", err)
	}
	return inbox.New(tr, reg, InboxQueue, []string{name}, send, func(ev inbox.Event) (string, string, any, bool) {
		o, ok := ev.Body.(*customers.CustomerOrderPlaced)
		if !ok {
			return "", "", nil, false
		}
		return Service, ev.Key, &RecordOrder{OrderID: o.OrderID, Amount: o.Amount}, true
	}, logger), nil
}
