package message

import "reflect"

// TypeOf returns the Go struct type registered under typeName.
func (r *Registry) TypeOf(typeName string) (reflect.Type, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.byName[typeName]
	return t, ok
}
