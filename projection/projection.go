package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/readmodel"
)

// Meta is what a handler knows about the event besides its payload.
type Meta struct {
	// Stream is the stream the event was recorded in, Seq its sequence
	// there.
	Stream string
	Seq    uint64
	// Key is the aggregate ID.
	Key string
	// EventID, Type, Source, CorrelationID and OccurredAt come from the
	// envelope.
	EventID       string
	Type          string
	Source        string
	CorrelationID string
	OccurredAt    time.Time
}

type handler func(ctx context.Context, tx readmodel.Tx, e any, m Meta) error

// Projection is a read model's definition: its name (also the model's
// name in the read-model store) and its event handlers. Build it with New
// and On, then register it with the engine.
type Projection struct {
	name     string
	handlers map[reflect.Type]handler
	order    []reflect.Type
	problems []error
}

// New defines a projection that builds the read model called name.
func New(name string) *Projection {
	return &Projection{name: name, handlers: make(map[reflect.Type]handler)}
}

// On registers h for public events of type E (a registered struct). h
// reads and changes documents through tx; everything it does for one
// event is written at once, with the stream's checkpoint.
func On[E any](p *Projection, h func(ctx context.Context, tx readmodel.Tx, e *E, m Meta) error) {
	t := reflect.TypeFor[E]()
	if _, dup := p.handlers[t]; dup {
		p.problems = append(p.problems, fmt.Errorf("event %v handled twice", t))
		return
	}
	p.order = append(p.order, t)
	p.handlers[t] = func(ctx context.Context, tx readmodel.Tx, e any, m Meta) error { return h(ctx, tx, e.(*E), m) }
}

// Name is the projection's (and its read model's) name.
func (p *Projection) Name() string { return p.name }

// Events lists the event types it handles, in registration order.
func (p *Projection) Events() []reflect.Type { return append([]reflect.Type(nil), p.order...) }

// Handles reports whether p has a handler for event (a pointer).
func (p *Projection) Handles(event any) bool {
	t := reflect.TypeOf(event)
	if t == nil || t.Kind() != reflect.Pointer {
		return false
	}
	_, ok := p.handlers[t.Elem()]
	return ok
}

// Validate reports a projection without a usable name or handlers.
func (p *Projection) Validate() error {
	errs := append([]error(nil), p.problems...)
	if err := readmodel.ValidName("projection name", p.name); err != nil {
		errs = append(errs, err)
	}
	if len(p.handlers) == 0 {
		errs = append(errs, errors.New("handles no event"))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("projection %q: %w", p.name, errors.Join(errs...))
}

// HandlerError wraps an error a handler returned, to tell it from a store
// error: the event is parked, not retried.
type HandlerError struct{ Err error }

func (e *HandlerError) Error() string { return e.Err.Error() }
func (e *HandlerError) Unwrap() error { return e.Err }

// Apply applies one event to the read model: through its handler when p
// handles the event's type, else as a no-op that only moves the stream's
// checkpoint. event is env's decoded payload, or nil for an event known
// to be skipped.
func (p *Projection) Apply(ctx context.Context, rm readmodel.Store, stream string, env message.Envelope, event any) (readmodel.Result, error) {
	var h handler
	if event != nil {
		if t := reflect.TypeOf(event); t.Kind() == reflect.Pointer {
			h = p.handlers[t.Elem()]
		}
	}
	m := Meta{Stream: stream, Seq: env.Sequence, Key: env.Key, EventID: env.ID, Type: env.Type, Source: env.Source,
		CorrelationID: env.CorrelationID, OccurredAt: env.OccurredAt}
	return rm.Update(ctx, p.name, stream, env.Sequence, func(ctx context.Context, tx readmodel.Tx) error {
		if h == nil {
			return nil
		}
		if err := h(ctx, tx, event, m); err != nil {
			return &HandlerError{Err: fmt.Errorf("projection %s: %s event %d (%s): %w", p.name, stream, env.Sequence, env.Type, err)}
		}
		return nil
	})
}

// Get reads the document with key into a T (the zero T and ok false when
// there is none).
func Get[T any](ctx context.Context, tx readmodel.Tx, key string) (v T, ok bool, err error) {
	d, ok, err := tx.Get(ctx, key)
	if err != nil || !ok {
		return v, ok, err
	}
	if err := json.Unmarshal(d.Body, &v); err != nil {
		return v, false, fmt.Errorf("read model document %s: decode into %T: %w", key, v, err)
	}
	return v, true, nil
}

// Put writes v (encoded as a JSON object) as the document with key.
func Put(tx readmodel.Tx, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("read model document %s: encode %T: %w", key, v, err)
	}
	return tx.Put(key, b)
}
