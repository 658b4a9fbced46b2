package aggregate

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// Snapshotting is implemented by aggregate types whose state can be
// snapshotted: the aggregate actor saves the encoded state every
// SnapshotInterval events and a load starts from the latest snapshot.
// Definition implements it; SnapshotInterval is 0 unless SnapshotEvery
// was called.
type Snapshotting interface {
	// SnapshotInterval is the number of events between snapshots (0: none).
	SnapshotInterval() int
	// StateSchema names the state's Go type and shape; a snapshot taken
	// under another schema is not used.
	StateSchema() string
	// EncodeState encodes a state for a snapshot.
	EncodeState(state any) ([]byte, error)
	// DecodeState decodes a snapshot's state; bytes that do not fit the
	// state type exactly are an error.
	DecodeState(data []byte) (any, error)
}

// SnapshotEvery makes the aggregate actor snapshot the state every n
// events, so that loading an aggregate reads the latest snapshot and at
// most about n events after it. The state is encoded as JSON, so every
// part of it must survive a JSON round trip: exported fields without
// `json:"-"`, no interfaces, funcs or channels (Validate reports the
// fields that would be lost). n must be at least 1.
func (d *Definition[S]) SnapshotEvery(n int) *Definition[S] {
	if n < 1 {
		d.problems = append(d.problems, fmt.Errorf("SnapshotEvery(%d): want at least 1 event between snapshots", n))
		return d
	}
	if err := jsonSafe(reflect.TypeFor[S](), "state", map[reflect.Type]bool{}); err != nil {
		d.problems = append(d.problems, fmt.Errorf("SnapshotEvery: %w", err))
		return d
	}
	d.snapshotEvery = n
	return d
}

// SnapshotInterval is the number of events between snapshots (0: none).
func (d *Definition[S]) SnapshotInterval() int { return d.snapshotEvery }

// StateSchema is the state's Go type name and a fingerprint of its shape
// (field names, JSON names and types, recursively), so that a snapshot of
// an older shape of the state is recognised and not used.
func (d *Definition[S]) StateSchema() string {
	t := reflect.TypeFor[S]()
	var b strings.Builder
	describe(&b, t, map[reflect.Type]bool{})
	sum := sha256.Sum256([]byte(b.String()))
	return t.String() + "@" + hex.EncodeToString(sum[:8])
}

// EncodeState encodes state (an S) as JSON.
func (d *Definition[S]) EncodeState(state any) ([]byte, error) {
	s, err := d.typed(state)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("aggregate %q: encode state: %w", d.name, err)
	}
	return data, nil
}

// DecodeState decodes JSON made by EncodeState into an S, refusing
// unknown fields and trailing data.
func (d *Definition[S]) DecodeState(data []byte) (any, error) {
	var s S
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("aggregate %q: decode state: %w", d.name, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("aggregate %q: decode state: trailing data", d.name)
	}
	return s, nil
}

var (
	marshalerType     = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// selfEncoding reports whether t encodes itself (time.Time and the like);
// such a type is trusted to round-trip.
func selfEncoding(t reflect.Type) bool {
	return t.Implements(marshalerType) || reflect.PointerTo(t).Implements(marshalerType) ||
		t.Implements(textMarshalerType) || reflect.PointerTo(t).Implements(textMarshalerType)
}

// jsonSafe reports the first part of t that a JSON round trip would lose
// or change.
func jsonSafe(t reflect.Type, path string, seen map[reflect.Type]bool) error {
	if seen[t] || selfEncoding(t) {
		return nil
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Interface:
		return fmt.Errorf("%s is an interface (%v): a snapshot cannot restore its dynamic type", path, t)
	case reflect.Func, reflect.Chan, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
		return fmt.Errorf("%s is a %v, which JSON cannot encode", path, t.Kind())
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return jsonSafe(t.Elem(), path+"[]", seen)
	case reflect.Map:
		if err := jsonSafe(t.Key(), path+" key", seen); err != nil {
			return err
		}
		return jsonSafe(t.Elem(), path+"[]", seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			fp := path + "." + f.Name
			if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag == "-" {
				return fmt.Errorf("%s is tagged json:\"-\": a snapshot would lose it", fp)
			}
			if !f.IsExported() && !f.Anonymous {
				return fmt.Errorf("%s is unexported: a snapshot would lose it", fp)
			}
			if err := jsonSafe(f.Type, fp, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

// describe writes t's shape to b.
func describe(b *strings.Builder, t reflect.Type, seen map[reflect.Type]bool) {
	b.WriteString(t.String())
	if seen[t] || selfEncoding(t) {
		return
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		b.WriteString("<")
		describe(b, t.Elem(), seen)
		b.WriteString(">")
	case reflect.Map:
		b.WriteString("<")
		describe(b, t.Key(), seen)
		b.WriteString(",")
		describe(b, t.Elem(), seen)
		b.WriteString(">")
	case reflect.Struct:
		b.WriteString("{")
		for i := range t.NumField() {
			f := t.Field(i)
			fmt.Fprintf(b, "%s %q ", f.Name, f.Tag.Get("json"))
			describe(b, f.Type, seen)
			b.WriteString(";")
		}
		b.WriteString("}")
	}
}
