package aggregate

import (
	"fmt"
	"reflect"
	"strconv"

	"github.com/sagaflow/sagaflow/message"
)

// Headers of a published (public) event.
const (
	// HeaderStream names the stream the internal event was recorded in
	// (for example "agg/crm.Customer/c-1"); projections keep their
	// per-stream checkpoints by it.
	HeaderStream = "sagaflow-stream"
	// HeaderCommit is the version of the commit that recorded it.
	HeaderCommit = "sagaflow-commit"
)

// Publisher is implemented by aggregate types that publish integration
// events: each internal event type with a mapper (registered with
// Publish) is turned into its public event before it leaves the service;
// an internal event without one is never published.
type Publisher interface {
	// PublicEvent maps internal event (a pointer to a registered struct)
	// to its public event. ok is false when the type has no mapper or the
	// mapper returned nil.
	PublicEvent(event any) (public any, ok bool, err error)
	// PublicEvents lists the public event types, in registration order.
	PublicEvents() []reflect.Type
}

// publishing holds a Definition's mappers (see Publish).
type publishing struct {
	mappers map[reflect.Type]func(any) (any, error)
	order   []reflect.Type
}

// Publish registers mapper, the explicit translation of internal events of
// type E into public integration events of type P. The public type is the
// contract other services see: it can stay the same while E changes. A
// mapper that returns nil, nil publishes nothing for that event; one that
// returns an error fails the command (the aggregate's bug: the command is
// dead-lettered with it).
func Publish[S, E, P any](d *Definition[S], mapper func(e *E) (*P, error)) {
	t := reflect.TypeFor[E]()
	if d.publish.mappers == nil {
		d.publish.mappers = make(map[reflect.Type]func(any) (any, error))
	}
	if _, dup := d.publish.mappers[t]; dup {
		d.problems = append(d.problems, fmt.Errorf("event %v published twice", t))
		return
	}
	pt := reflect.TypeFor[P]()
	if pt.Kind() != reflect.Struct {
		d.problems = append(d.problems, fmt.Errorf("public event %v of %v is not a struct", pt, t))
		return
	}
	d.publish.mappers[t] = func(e any) (any, error) {
		p, err := mapper(e.(*E))
		if err != nil || p == nil {
			return nil, err
		}
		return p, nil
	}
	d.publish.order = append(d.publish.order, pt)
}

// PublicEvent implements Publisher.
func (d *Definition[S]) PublicEvent(event any) (any, bool, error) {
	t := reflect.TypeOf(event)
	if t == nil || t.Kind() != reflect.Pointer {
		return nil, false, fmt.Errorf("aggregate %q: event %T must be a pointer to a struct", d.name, event)
	}
	f, ok := d.publish.mappers[t.Elem()]
	if !ok {
		return nil, false, nil
	}
	p, err := f(event)
	if err != nil {
		return nil, false, fmt.Errorf("aggregate %q: map %v to its public event: %w", d.name, t.Elem(), err)
	}
	return p, p != nil, nil
}

// PublicEvents implements Publisher.
func (d *Definition[S]) PublicEvents() []reflect.Type {
	return append([]reflect.Type(nil), d.publish.order...)
}

// PublicEnvelope builds the public event envelope of internal event env
// (decoded as event), recorded in stream at commit version commit, when t
// publishes it: the public type and payload, the internal event's ID,
// key, sequence, saga, correlation and causation, and the stream headers.
// ok is false when t publishes nothing for the event. It is a pure
// function: the aggregate actor calls it when committing, a projection
// rebuild when replaying the store, and both get the same envelope.
func PublicEnvelope(reg *message.Registry, t Type, stream string, commit uint64, env message.Envelope, event any) (message.Envelope, bool, error) {
	p, isPublisher := t.(Publisher)
	if !isPublisher {
		return message.Envelope{}, false, nil
	}
	public, ok, err := p.PublicEvent(event)
	if err != nil || !ok {
		return message.Envelope{}, false, err
	}
	typeName, payload, err := reg.Encode(public)
	if err != nil {
		return message.Envelope{}, false, fmt.Errorf("aggregate %q: public event of %s: %w", t.Name(), env.Type, err)
	}
	out := message.Envelope{
		ID: env.ID, Kind: message.KindEvent, Type: typeName, Source: env.Source, Key: env.Key,
		SagaID: env.SagaID, CorrelationID: env.CorrelationID, CausationID: env.CausationID,
		Sequence: env.Sequence, OccurredAt: env.OccurredAt, Payload: payload,
	}
	out.SetHeader(HeaderStream, stream)
	out.SetHeader(HeaderCommit, strconv.FormatUint(commit, 10))
	return out, true, nil
}
