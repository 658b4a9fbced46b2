// Package customers is the customer service of the email-campaign example:
// an event-sourced Customer aggregate (registration, email permission
// granted or revoked, orders placed) whose internal events are published
// as public integration events through explicit mappers. Other services
// (classification, campaigns) see only the public events; they never call
// this service. Each command is idempotent per aggregate (I3 is the
// engine's; a repeated grant or a repeated order ID records nothing).
package customers

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/engine"
)

// Service is the queue the customer commands arrive on.
const Service = "customers"

// AggregateName is the Customer aggregate's type name.
const AggregateName = "customers.Customer"

// Commands.
type (
	// Register creates a customer.
	Register struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	// GrantEmailPermission records that the customer allows marketing email.
	GrantEmailPermission struct{}
	// RevokeEmailPermission records that the customer withdrew it.
	RevokeEmailPermission struct{}
	// PlaceOrder records an order of Amount (whole currency units).
	PlaceOrder struct {
		OrderID string `json:"order_id"`
		Amount  int    `json:"amount"`
	}
)

// Internal events: the customer service's own record.
type (
	// Registered records a new customer.
	Registered struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	// PermissionGranted records an email permission.
	PermissionGranted struct{}
	// PermissionRevoked records its withdrawal.
	PermissionRevoked struct{}
	// OrderPlaced records an order.
	OrderPlaced struct {
		OrderID string `json:"order_id"`
		Amount  int    `json:"amount"`
	}
)

// Public events: the contract the other services see. The customer's ID
// is the envelope's key; the sequence is the customer stream's.
type (
	// CustomerRegistered is published for Registered.
	CustomerRegistered struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	// EmailPermissionGranted is published for PermissionGranted.
	EmailPermissionGranted struct{}
	// EmailPermissionRevoked is published for PermissionRevoked.
	EmailPermissionRevoked struct{}
	// CustomerOrderPlaced is published for OrderPlaced.
	CustomerOrderPlaced struct {
		OrderID string `json:"order_id"`
		Amount  int    `json:"amount"`
	}
)

// State is a customer.
type State struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Email      string          `json:"email"`
	Registered bool            `json:"registered"`
	Permission bool            `json:"permission"`
	Orders     map[string]bool `json:"orders,omitempty"`
}

// Messages returns the registrations of the service's message types.
func Messages() []any {
	return []any{
		engine.Message[Register]("customers.Register.v1"),
		engine.Message[GrantEmailPermission]("customers.GrantEmailPermission.v1"),
		engine.Message[RevokeEmailPermission]("customers.RevokeEmailPermission.v1"),
		engine.Message[PlaceOrder]("customers.PlaceOrder.v1"),
		engine.Message[Registered]("customers.Registered.v1"),
		engine.Message[PermissionGranted]("customers.PermissionGranted.v1"),
		engine.Message[PermissionRevoked]("customers.PermissionRevoked.v1"),
		engine.Message[OrderPlaced]("customers.OrderPlaced.v1"),
	}
}

// PublicMessages returns the registrations of the public events, which
// every service that consumes them registers too.
func PublicMessages() []any {
	return []any{
		engine.Message[CustomerRegistered]("customers.public.CustomerRegistered.v1"),
		engine.Message[EmailPermissionGranted]("customers.public.EmailPermissionGranted.v1"),
		engine.Message[EmailPermissionRevoked]("customers.public.EmailPermissionRevoked.v1"),
		engine.Message[CustomerOrderPlaced]("customers.public.CustomerOrderPlaced.v1"),
	}
}

// Aggregate returns the Customer aggregate with its public mappers.
func Aggregate() *aggregate.Definition[State] {
	d := aggregate.New(Service, AggregateName, func(id string) State { return State{ID: id} })
	aggregate.Handle(d, func(s State, c *Register) ([]any, error) {
		if s.Registered {
			if s.Email == c.Email && s.Name == c.Name {
				return nil, nil
			}
			return nil, fmt.Errorf("customer %s already registered", s.ID)
		}
		if strings.TrimSpace(c.Name) == "" {
			return nil, errors.New("name is required")
		}
		if !strings.Contains(c.Email, "@") {
			return nil, fmt.Errorf("email %q: not an address", c.Email)
		}
		return []any{&Registered{Name: c.Name, Email: c.Email}}, nil
	})
	aggregate.Handle(d, func(s State, _ *GrantEmailPermission) ([]any, error) {
		if !s.Registered {
			return nil, fmt.Errorf("customer %s is not registered", s.ID)
		}
		if s.Permission {
			return nil, nil
		}
		return []any{&PermissionGranted{}}, nil
	})
	aggregate.Handle(d, func(s State, _ *RevokeEmailPermission) ([]any, error) {
		if !s.Permission {
			return nil, nil
		}
		return []any{&PermissionRevoked{}}, nil
	})
	aggregate.Handle(d, func(s State, c *PlaceOrder) ([]any, error) {
		if !s.Registered {
			return nil, fmt.Errorf("customer %s is not registered", s.ID)
		}
		if c.OrderID == "" {
			return nil, errors.New("order_id is required")
		}
		if c.Amount <= 0 {
			return nil, fmt.Errorf("order %s: amount %d must be positive", c.OrderID, c.Amount)
		}
		if s.Orders[c.OrderID] {
			return nil, nil
		}
		return []any{&OrderPlaced{OrderID: c.OrderID, Amount: c.Amount}}, nil
	})
	aggregate.Apply(d, func(s State, e *Registered) State {
		s.Name, s.Email, s.Registered = e.Name, e.Email, true
		return s
	})
	aggregate.Apply(d, func(s State, _ *PermissionGranted) State { s.Permission = true; return s })
	aggregate.Apply(d, func(s State, _ *PermissionRevoked) State { s.Permission = false; return s })
	aggregate.Apply(d, func(s State, e *OrderPlaced) State {
		if s.Orders == nil {
			s.Orders = map[string]bool{}
		}
		s.Orders[e.OrderID] = true
		return s
	})
	aggregate.Publish(d, func(e *Registered) (*CustomerRegistered, error) {
		return &CustomerRegistered{Name: e.Name, Email: e.Email}, nil
	})
	aggregate.Publish(d, func(*PermissionGranted) (*EmailPermissionGranted, error) { return &EmailPermissionGranted{}, nil })
	aggregate.Publish(d, func(*PermissionRevoked) (*EmailPermissionRevoked, error) { return &EmailPermissionRevoked{}, nil })
	aggregate.Publish(d, func(e *OrderPlaced) (*CustomerOrderPlaced, error) {
		return &CustomerOrderPlaced{OrderID: e.OrderID, Amount: e.Amount}, nil
	})
	return d
}

// Setup registers the service's messages and aggregate on e.
func Setup(e *engine.Engine) *engine.Engine {
	return e.Register(Messages()...).Register(PublicMessages()...).Register(Aggregate())
}
