package aggregate

import (
	"errors"
	"fmt"
	"reflect"
)

// ErrNoHandler: a command or event type has no function registered for it.
var ErrNoHandler = errors.New("no handler registered")

type retryableError struct{ err error }

func (e retryableError) Error() string { return e.err.Error() }
func (e retryableError) Unwrap() error { return e.err }

// Retryable marks a decide error as technical: the sender may try again.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return retryableError{err: err}
}

// IsRetryable reports whether err was marked with Retryable.
func IsRetryable(err error) bool {
	var r retryableError
	return errors.As(err, &r)
}

// Type is the untyped view of a Definition that the actors use. States are
// the Definition's S values, commands and events pointers to registered
// structs.
type Type interface {
	// Name is the aggregate type, for example "inventory.Reservation".
	Name() string
	// Service is the queue the aggregate's commands arrive on.
	Service() string
	// Initial returns the state of an aggregate with no events.
	Initial(id string) any
	// Decide handles a command against a state.
	Decide(state any, cmd any) ([]any, error)
	// Apply folds an event into a state.
	Apply(state any, event any) (any, error)
	// Commands and Events list the Go types the aggregate handles.
	Commands() []reflect.Type
	Events() []reflect.Type
	// Validate reports a definition that cannot work.
	Validate() error
}

// Definition is a typed aggregate. Build it with New, Handle and Apply.
type Definition[S any] struct {
	name, service string
	initial       func(id string) S
	deciders      map[reflect.Type]func(S, any) ([]any, error)
	appliers      map[reflect.Type]func(S, any) S
	cmdOrder      []reflect.Type
	evtOrder      []reflect.Type
	problems      []error
	snapshotEvery int        // see SnapshotEvery
	publish       publishing // public event mappers (publish.go)
}

// New defines an aggregate type called name whose commands arrive on the
// service queue; initial gives the state of a new aggregate.
func New[S any](service, name string, initial func(id string) S) *Definition[S] {
	return &Definition[S]{
		name: name, service: service, initial: initial,
		deciders: make(map[reflect.Type]func(S, any) ([]any, error)),
		appliers: make(map[reflect.Type]func(S, any) S),
	}
}

// Handle registers decide for commands of type C. decide returns the events
// the command causes (registered structs, values or pointers) or an error
// that rejects it.
func Handle[S, C any](d *Definition[S], decide func(s S, c *C) ([]any, error)) {
	t := reflect.TypeFor[C]()
	if _, dup := d.deciders[t]; dup {
		d.problems = append(d.problems, fmt.Errorf("command %v handled twice", t))
		return
	}
	d.cmdOrder = append(d.cmdOrder, t)
	d.deciders[t] = func(s S, c any) ([]any, error) {
		return decide(s, c.(*C))
	}
}

// Apply registers apply for events of type E.
func Apply[S, E any](d *Definition[S], apply func(s S, e *E) S) {
	t := reflect.TypeFor[E]()
	if _, dup := d.appliers[t]; dup {
		d.problems = append(d.problems, fmt.Errorf("event %v applied twice", t))
		return
	}
	d.evtOrder = append(d.evtOrder, t)
	d.appliers[t] = func(s S, e any) S { return apply(s, e.(*E)) }
}

// Name is the aggregate type name.
func (d *Definition[S]) Name() string { return d.name }

// Service is the queue the commands arrive on.
func (d *Definition[S]) Service() string { return d.service }

// Initial returns the state of an aggregate with no events.
func (d *Definition[S]) Initial(id string) any { return d.initial(id) }

// Commands lists the command types, in registration order.
func (d *Definition[S]) Commands() []reflect.Type { return append([]reflect.Type(nil), d.cmdOrder...) }

// Events lists the event types, in registration order.
func (d *Definition[S]) Events() []reflect.Type { return append([]reflect.Type(nil), d.evtOrder...) }

// Validate reports a definition without name, service, initial state or
// commands, and registrations made twice.
func (d *Definition[S]) Validate() error {
	errs := append([]error(nil), d.problems...)
	if d.name == "" {
		errs = append(errs, errors.New("no name"))
	}
	if d.service == "" {
		errs = append(errs, errors.New("no service"))
	}
	if d.initial == nil {
		errs = append(errs, errors.New("no initial state function"))
	}
	if len(d.deciders) == 0 {
		errs = append(errs, errors.New("handles no command"))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("aggregate %q: %w", d.name, errors.Join(errs...))
}

func (d *Definition[S]) typed(state any) (S, error) {
	s, ok := state.(S)
	if !ok {
		var zero S
		return zero, fmt.Errorf("aggregate %q: state is %T, want %T", d.name, state, zero)
	}
	return s, nil
}

// Decide runs the decide function registered for cmd's type. A panic in it
// is returned as an error.
func (d *Definition[S]) Decide(state any, cmd any) (events []any, err error) {
	s, err := d.typed(state)
	if err != nil {
		return nil, err
	}
	t := reflect.TypeOf(cmd)
	if t == nil || t.Kind() != reflect.Pointer {
		return nil, fmt.Errorf("aggregate %q: command %T must be a pointer to a struct", d.name, cmd)
	}
	f, ok := d.deciders[t.Elem()]
	if !ok {
		return nil, fmt.Errorf("aggregate %q: command %v: %w", d.name, t.Elem(), ErrNoHandler)
	}
	return f(s, cmd)
}

// Apply runs the apply function registered for event's type.
func (d *Definition[S]) Apply(state any, event any) (any, error) {
	s, err := d.typed(state)
	if err != nil {
		return nil, err
	}
	t := reflect.TypeOf(event)
	if t == nil || t.Kind() != reflect.Pointer {
		return nil, fmt.Errorf("aggregate %q: event %T must be a pointer to a struct", d.name, event)
	}
	f, ok := d.appliers[t.Elem()]
	if !ok {
		return nil, fmt.Errorf("aggregate %q: event %v: %w", d.name, t.Elem(), ErrNoHandler)
	}
	return f(s, event), nil
}
