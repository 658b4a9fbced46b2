package projection

import (
	"reflect"

	"github.com/sagaflow/sagaflow/aggregate"
)

// followsAggregate reports whether aggregate t publishes an event type
// the projection handles.
func (r *Runner) followsAggregate(t aggregate.Type) bool {
	p, ok := t.(aggregate.Publisher)
	if !ok {
		return false
	}
	for _, pt := range p.PublicEvents() {
		if _, ok := r.p.handlers[pt]; ok {
			return true
		}
	}
	return false
}

func reflectNew(t reflect.Type) any { return reflect.New(t).Interface() }
