package transport

// Readiness: a transport that can tell whether it works right now (the
// RabbitMQ transport: connected, not blocked by a broker alarm) has a
// Ready() error method, and one that can tell whether a publish would go
// out now has PublishReady() error. Decorators (tracing, fault injection,
// the engine's drain gate) need not forward either: they return the
// transport they wrap from Unwrap() Transport, and Ready and PublishReady
// below ask down the chain.

// Wrapper is a transport that decorates another one.
type Wrapper interface {
	// Unwrap returns the decorated transport.
	Unwrap() Transport
}

// maxUnwrap bounds the walk down a chain of decorators (a chain that
// loops back on itself would otherwise never end).
const maxUnwrap = 32

// Ready returns the readiness of the first transport in tr's chain of
// decorators that can tell (nil when it works), or nil when none can.
func Ready(tr Transport) error {
	return ask(tr, func(t Transport) (bool, error) {
		r, ok := t.(interface{ Ready() error })
		if !ok {
			return false, nil
		}
		return true, r.Ready()
	})
}

// PublishReady returns the publish readiness of the first transport in
// tr's chain of decorators that can tell (nil when a publish can go out
// now), or nil when none can.
func PublishReady(tr Transport) error {
	return ask(tr, func(t Transport) (bool, error) {
		r, ok := t.(interface{ PublishReady() error })
		if !ok {
			return false, nil
		}
		return true, r.PublishReady()
	})
}

// ask walks tr's chain until tell can answer.
func ask(tr Transport, tell func(Transport) (answered bool, err error)) error {
	for range maxUnwrap {
		if tr == nil {
			return nil
		}
		if answered, err := tell(tr); answered {
			return err
		}
		w, ok := tr.(Wrapper)
		if !ok {
			return nil
		}
		tr = w.Unwrap()
	}
	return nil
}
