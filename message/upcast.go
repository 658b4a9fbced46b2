package message

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
)

// UpcastFunc turns the encoded payload of one schema version of a type
// into the payload of the next version (from v1 to v2, say). It gets and
// returns the codec's bytes: JSON with the default codec. It must not keep
// old after it returns.
type UpcastFunc func(old json.RawMessage) (json.RawMessage, error)

// maxUpcastSteps bounds one upcast chain (v1 -> v2 -> ... ).
const maxUpcastSteps = 1000

// Upcast registers fn to turn payloads of type name (without its version,
// such as "inventory.Reserved") at schema version from into version
// from+1. When a stored or received payload's type is an older version
// than the one registered, Decode runs the upcasters from its version up
// to the registered version, one step at a time, and decodes the result as
// the registered type. Registering a second upcaster for the same name and
// version is an error.
func Upcast(r *Registry, name string, from int, fn UpcastFunc) error {
	if from < 1 {
		return fmt.Errorf("upcaster for %q: from version %d, want a whole number from 1", name, from)
	}
	if _, _, err := ParseType(TypeName(name, from)); err != nil {
		return fmt.Errorf("upcaster for %q v%d: %w", name, from, err)
	}
	if fn == nil {
		return fmt.Errorf("upcaster for %q v%d: nil function", name, from)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.upcasters == nil {
		r.upcasters = make(map[string]map[int]UpcastFunc)
	}
	byVersion := r.upcasters[name]
	if byVersion == nil {
		byVersion = make(map[int]UpcastFunc)
		r.upcasters[name] = byVersion
	}
	if _, dup := byVersion[from]; dup {
		return fmt.Errorf("upcaster for %q v%d registered twice", name, from)
	}
	byVersion[from] = fn
	return nil
}

// upcast turns payload, of unregistered type typeName, into the payload of
// the registered version of the same name, through the chain of
// upcasters. It returns the registered type name and Go type.
func (r *Registry) upcast(typeName string, payload []byte) (string, reflect.Type, []byte, error) {
	name, version, err := ParseType(typeName)
	if err != nil {
		return "", nil, nil, fmt.Errorf("%w: %q is not registered: %w", ErrUnknownType, typeName, err)
	}
	r.mu.RLock()
	target, registered := r.latestVersion(name)
	byVersion := r.upcasters[name]
	r.mu.RUnlock()
	switch {
	case len(registered) == 0:
		return "", nil, nil, fmt.Errorf("%w: %q is not registered (no version of %q is)", ErrUnknownType, typeName, name)
	case version > target:
		return "", nil, nil, fmt.Errorf("%w: %q is newer than the registered versions of %q (%s)", ErrUnknownType, typeName, name, versionList(registered))
	}
	for v, steps := version, 0; ; v, steps = v+1, steps+1 {
		r.mu.RLock()
		t, ok := r.byName[TypeName(name, v)]
		r.mu.RUnlock()
		if ok {
			return TypeName(name, v), t, payload, nil
		}
		fn := byVersion[v]
		if fn == nil || steps >= maxUpcastSteps {
			return "", nil, nil, fmt.Errorf("%w: %q is not registered and no upcaster turns %s v%d into v%d (registered versions: %s; upcasters from: %s)",
				ErrUnknownType, typeName, name, v, v+1, versionList(registered), versionList(keys(byVersion)))
		}
		out, err := callUpcaster(fn, payload)
		if err != nil {
			return "", nil, nil, fmt.Errorf("%w: upcast %s from v%d to v%d: %w", ErrMalformed, name, v, v+1, err)
		}
		payload = out
	}
}

// callUpcaster runs fn, turning a panic into an error.
func callUpcaster(fn UpcastFunc, payload []byte) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("upcaster panicked: %v", p)
		}
	}()
	out, err = fn(append(json.RawMessage(nil), payload...))
	if err == nil && out == nil {
		err = errors.New("upcaster returned no payload")
	}
	return out, err
}

// latestVersion returns the highest registered version of name and all
// registered versions. The caller holds r.mu.
func (r *Registry) latestVersion(name string) (int, []int) {
	var versions []int
	for n := range r.byName {
		if base, v, err := ParseType(n); err == nil && base == name {
			versions = append(versions, v)
		}
	}
	sort.Ints(versions)
	if len(versions) == 0 {
		return 0, nil
	}
	return versions[len(versions)-1], versions
}

func keys(m map[int]UpcastFunc) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

func versionList(vs []int) string {
	if len(vs) == 0 {
		return "none"
	}
	s := ""
	for i, v := range vs {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("v%d", v)
	}
	return s
}
