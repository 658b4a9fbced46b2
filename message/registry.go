package message

import (
	"fmt"
	"reflect"
	"sort"
	"sync"

	"github.com/sagaflow/sagaflow/internal/recordjson"
)

// Registry maps versioned type names to Go struct types and back. Every
// payload that crosses a boundary has a registered type; there are no
// untyped payloads. A Registry is safe for concurrent use; it hangs off an
// engine value, never a global.
type Registry struct {
	codec      Codec
	maxPayload int // see SetMaxPayloadSize
	mu         sync.RWMutex
	byName     map[string]reflect.Type
	byType     map[reflect.Type]string
	// records holds the types registered with RegisterRecord.
	records map[reflect.Type]bool
	// upcasters: type name without version -> from version -> upcaster
	// (see Upcast).
	upcasters map[string]map[int]UpcastFunc
}

// NewRegistry returns an empty registry using codec (JSON when nil).
func NewRegistry(codec Codec) *Registry {
	if codec == nil {
		codec = JSON{}
	}
	return &Registry{
		codec:      codec,
		maxPayload: DefaultMaxPayloadSize,
		byName:     make(map[string]reflect.Type),
		byType:     make(map[reflect.Type]string),
		records:    make(map[reflect.Type]bool),
	}
}

// DefaultMaxPayloadSize is the largest payload Decode accepts by default
// (16 MiB, MongoDB's document limit: no payload a store holds is larger,
// while anything that crossed a transport is far smaller, see
// DefaultMaxSize).
const DefaultMaxPayloadSize = 16 << 20

// SetMaxPayloadSize sets the largest payload, in bytes, that Decode
// accepts; a larger one is refused by its length before any parse (values
// below 1: DefaultMaxPayloadSize). Call it before the registry is used.
func (r *Registry) SetMaxPayloadSize(n int) {
	if n < 1 {
		n = DefaultMaxPayloadSize
	}
	r.mu.Lock()
	r.maxPayload = n
	r.mu.Unlock()
}

// Codec returns the registry's payload codec.
func (r *Registry) Codec() Codec { return r.codec }

// Register maps typeName (for example "inventory.ReserveStock.v1") to T,
// which must be a struct type. Registering the same pair twice is a no-op;
// registering a name or a type twice with a different partner is an error.
func Register[T any](r *Registry, typeName string) error {
	return r.RegisterType(typeName, reflect.TypeFor[T]())
}

// RegisterRecord is Register for sagaflow's own record types, such as the
// event of every saga commit: with the JSON codec their payloads are
// encoded by recordjson, the bytes encoding/json writes without HTML
// escaping, for a fraction of its CPU. User types stay with encoding/json
// (Register), whose behaviour users know; another codec encodes both.
func RegisterRecord[T any](r *Registry, typeName string) error {
	t := reflect.TypeFor[T]()
	if err := r.RegisterType(typeName, t); err != nil {
		return err
	}
	r.mu.Lock()
	r.records[t] = true
	r.mu.Unlock()
	return nil
}

// MustRegister is Register that panics on error, for registration code that
// runs once at startup where a conflict is a programming error.
func MustRegister[T any](r *Registry, typeName string) {
	if err := Register[T](r, typeName); err != nil {
		panic(err)
	}
}

// RegisterType is the non-generic form of Register.
func (r *Registry) RegisterType(typeName string, t reflect.Type) error {
	if _, _, err := ParseType(typeName); err != nil {
		return err
	}
	if t == nil || t.Kind() != reflect.Struct {
		return fmt.Errorf("register %q: %v is not a struct type", typeName, t)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if have, ok := r.byName[typeName]; ok {
		if have == t {
			return nil
		}
		return fmt.Errorf("register %q: already registered to %v, not %v", typeName, have, t)
	}
	if have, ok := r.byType[t]; ok {
		return fmt.Errorf("register %q: %v is already registered as %q", typeName, t, have)
	}
	r.byName[typeName] = t
	r.byType[t] = typeName
	return nil
}

// Names returns the registered type names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.byName))
	for n := range r.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Known reports whether typeName is registered.
func (r *Registry) Known(typeName string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.byName[typeName]
	return ok
}

// TypeNameOf returns the type name v's type (a struct or a pointer to one)
// is registered under.
func (r *Registry) TypeNameOf(v any) (string, error) {
	name, _, err := r.lookup(v)
	return name, err
}

// lookup returns the name v's type is registered under and whether it was
// registered as a record (RegisterRecord).
func (r *Registry) lookup(v any) (name string, record bool, err error) {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	r.mu.RLock()
	name, ok := r.byType[t]
	record = r.records[t]
	r.mu.RUnlock()
	if !ok {
		return "", false, fmt.Errorf("%w: Go type %v is not registered", ErrUnknownType, t)
	}
	return name, record, nil
}

// Encode returns v's registered type name and its encoded payload.
func (r *Registry) Encode(v any) (typeName string, payload []byte, err error) {
	typeName, record, err := r.lookup(v)
	if err != nil {
		return "", nil, err
	}
	if _, isJSON := r.codec.(JSON); record && isJSON {
		payload, err = recordjson.Marshal(v)
	} else {
		payload, err = r.codec.Marshal(v)
	}
	if err != nil {
		return "", nil, fmt.Errorf("encode %q: %w", typeName, err)
	}
	return typeName, payload, nil
}

// Decode decodes payload as the type registered under typeName and returns
// a pointer to a new value of that type. A name that is not registered but
// is an older schema version of a registered type is first upcast through
// the upcasters registered with Upcast, and decodes as the registered
// version. An unknown name (or an old version with no upcaster) wraps
// ErrUnknownType; bytes that do not decode wrap ErrMalformed, and with it
// ErrPayloadTooLarge for a payload over the limit (SetMaxPayloadSize),
// refused by its length before any parse; every error names the type.
// (Nesting depth is checked with the envelope: see MaxDepth.)
func (r *Registry) Decode(typeName string, payload []byte) (any, error) {
	r.mu.RLock()
	t, ok := r.byName[typeName]
	limit := r.maxPayload
	r.mu.RUnlock()
	if len(payload) > limit {
		return nil, fmt.Errorf("%w: payload of %q: %w: %d bytes, limit %d", ErrMalformed, typeName, ErrPayloadTooLarge, len(payload), limit)
	}
	if !ok {
		var err error
		if typeName, t, payload, err = r.upcast(typeName, payload); err != nil {
			return nil, err
		}
	}
	v := reflect.New(t).Interface()
	if err := r.codec.Unmarshal(payload, v); err != nil {
		return nil, fmt.Errorf("%w: payload of %q: %w", ErrMalformed, typeName, err)
	}
	return v, nil
}

// DecodeEnvelope decodes e's payload by e.Type; see Decode.
func (r *Registry) DecodeEnvelope(e Envelope) (any, error) {
	v, err := r.Decode(e.Type, e.Payload)
	if err != nil {
		return nil, fmt.Errorf("message %q: %w", e.ID, err)
	}
	return v, nil
}

// New builds an envelope of kind k around payload v, with a fresh ID, the
// registered type name, key and occurred-at time set.
func (r *Registry) New(k Kind, key string, v any) (Envelope, error) {
	typeName, payload, err := r.Encode(v)
	if err != nil {
		return Envelope{}, err
	}
	return Envelope{ID: NewID(), Kind: k, Type: typeName, Key: key, Payload: payload}, nil
}
