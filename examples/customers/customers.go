package customers

import (
	"context"
	"errors"
	"slices"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/projection"
	"github.com/sagaflow/sagaflow/readmodel"
)

// Service is the queue the customer commands arrive on.
const Service = "crm"

// AggregateName is the customer aggregate's type name.
const AggregateName = "crm.Customer"

// Projection names.
const (
	// ByID is the read model with one document per customer.
	ByID = "customers"
	// ByClass is the read model with the customers of each class.
	ByClass = "customers.byClass"
)

// Commands.
type (
	// Register creates a customer.
	Register struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	// Classify sets a customer's classification (A, B, C) with the score
	// the analysis service computed.
	Classify struct {
		Class string `json:"class"`
		Score int    `json:"score"`
	}
	// AddNote records an internal note; it is never published.
	AddNote struct {
		Text string `json:"text"`
	}
)

// Internal events: the crm service's own record, free to change.
type (
	// Registered records a new customer.
	Registered struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	// Classified records a classification.
	Classified struct {
		Class string `json:"class"`
		Score int    `json:"score"`
	}
	// NoteAdded records a note (no public event).
	NoteAdded struct {
		Text string `json:"text"`
	}
)

// Public events: the contract other services and the projections see.
type (
	// CustomerRegistered is published for Registered.
	// The customer's ID is the envelope's key.
	CustomerRegistered struct {
		Name string `json:"name"`
	}
	// CustomerClassificationUpdated is published for Classified (the
	// talk's CUSTOMER_CLASSIFICATION_UPDATED).
	CustomerClassificationUpdated struct {
		Class string `json:"class"`
	}
)

// State is a customer.
type State struct {
	ID         string
	Name       string
	Class      string
	Registered bool
}

// Aggregate returns the customer aggregate with its public mappers.
func Aggregate() *aggregate.Definition[State] {
	d := aggregate.New(Service, AggregateName, func(id string) State { return State{ID: id} })
	aggregate.Handle(d, func(s State, c *Register) ([]any, error) {
		if s.Registered {
			return nil, errors.New("customer already registered")
		}
		if c.Name == "" {
			return nil, errors.New("name is required")
		}
		return []any{&Registered{Name: c.Name, Email: c.Email}}, nil
	})
	aggregate.Handle(d, func(s State, c *Classify) ([]any, error) {
		if !s.Registered {
			return nil, errors.New("unknown customer")
		}
		if !slices.Contains([]string{"A", "B", "C"}, c.Class) {
			return nil, errors.New("class must be A, B or C")
		}
		return []any{&Classified{Class: c.Class, Score: c.Score}}, nil
	})
	aggregate.Handle(d, func(s State, c *AddNote) ([]any, error) {
		return []any{&NoteAdded{Text: c.Text}}, nil
	})
	aggregate.Apply(d, func(s State, e *Registered) State { s.Name, s.Registered = e.Name, true; return s })
	aggregate.Apply(d, func(s State, e *Classified) State { s.Class = e.Class; return s })
	aggregate.Apply(d, func(s State, _ *NoteAdded) State { return s })
	aggregate.Publish(d, MapRegistered)
	aggregate.Publish(d, MapClassified)
	return d
}

// MapRegistered maps the internal Registered event to its public event;
// the e-mail address stays inside the service.
func MapRegistered(e *Registered) (*CustomerRegistered, error) {
	return &CustomerRegistered{Name: e.Name}, nil
}

// MapClassified maps Classified; the score stays inside the service.
func MapClassified(e *Classified) (*CustomerClassificationUpdated, error) {
	return &CustomerClassificationUpdated{Class: e.Class}, nil
}

// Customer is a document of the "customers" read model.
type Customer struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Class string `json:"class,omitempty"`
}

// Class is a document of the "customers.byClass" read model.
type Class struct {
	Class     string   `json:"class"`
	Customers []string `json:"customers"`
}

// ByIDProjection builds the "customers" read model.
func ByIDProjection() *projection.Projection {
	p := projection.New(ByID)
	projection.On(p, func(ctx context.Context, tx readmodel.Tx, e *CustomerRegistered, m projection.Meta) error {
		return projection.Put(tx, m.Key, Customer{ID: m.Key, Name: e.Name})
	})
	projection.On(p, func(ctx context.Context, tx readmodel.Tx, e *CustomerClassificationUpdated, m projection.Meta) error {
		c, _, err := projection.Get[Customer](ctx, tx, m.Key)
		if err != nil {
			return err
		}
		c.ID, c.Class = m.Key, e.Class
		return projection.Put(tx, m.Key, c)
	})
	return p
}

// ByClassProjection builds the "customers.byClass" read model: one
// document per class, plus "customer:<id>" documents that remember each
// customer's class so that a reclassification moves the customer.
func ByClassProjection() *projection.Projection {
	p := projection.New(ByClass)
	projection.On(p, func(ctx context.Context, tx readmodel.Tx, e *CustomerClassificationUpdated, m projection.Meta) error {
		type membership struct {
			Class string `json:"class"`
		}
		prev, _, err := projection.Get[membership](ctx, tx, "customer:"+m.Key)
		if err != nil {
			return err
		}
		if prev.Class == e.Class {
			return nil
		}
		if prev.Class != "" {
			old, _, err := projection.Get[Class](ctx, tx, prev.Class)
			if err != nil {
				return err
			}
			old.Customers = slices.DeleteFunc(old.Customers, func(id string) bool { return id == m.Key })
			if err := projection.Put(tx, prev.Class, old); err != nil {
				return err
			}
		}
		cur, _, err := projection.Get[Class](ctx, tx, e.Class)
		if err != nil {
			return err
		}
		cur.Class = e.Class
		cur.Customers = append(cur.Customers, m.Key)
		slices.Sort(cur.Customers)
		if err := projection.Put(tx, e.Class, cur); err != nil {
			return err
		}
		return projection.Put(tx, "customer:"+m.Key, membership{Class: e.Class})
	})
	return p
}

// Setup registers the message types, the aggregate and both projections
// on e.
func Setup(e *engine.Engine) *engine.Engine {
	return e.Register(
		engine.Message[Register]("crm.Register.v1"),
		engine.Message[Classify]("crm.Classify.v1"),
		engine.Message[AddNote]("crm.AddNote.v1"),
		engine.Message[Registered]("crm.Registered.v1"),
		engine.Message[Classified]("crm.Classified.v1"),
		engine.Message[NoteAdded]("crm.NoteAdded.v1"),
		engine.Message[CustomerRegistered]("crm.public.CustomerRegistered.v1"),
		engine.Message[CustomerClassificationUpdated]("crm.public.CustomerClassificationUpdated.v1"),
		Aggregate(),
		ByIDProjection(),
		ByClassProjection(),
	)
}
