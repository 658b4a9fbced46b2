package participant

import "errors"

// Sentinel errors; test for them with errors.Is.
var (
	// ErrDuplicate: a Deduper found the message recorded as handled
	// already (another delivery of it won the race).
	ErrDuplicate = errors.New("message already handled")
	// ErrNoHandler: no handler is registered for a command's type.
	ErrNoHandler = errors.New("no handler for command type")
	// ErrNotCommand: a delivery on the service's queue is not a command.
	ErrNotCommand = errors.New("not a command")
	// ErrPanic: a handler panicked; the panic is reported as a technical
	// error.
	ErrPanic = errors.New("handler panicked")
)

// failure marks an error as a business failure.
type failure struct{ err error }

func (f failure) Error() string { return f.err.Error() }
func (f failure) Unwrap() error { return f.err }

// Fail marks err as a business failure: the command was refused for a
// reason that trying again will not change (payment declined, out of
// stock). The reply says so, and the saga compensates the steps it has
// done. Any other error a handler returns is technical and is retried.
// Fail(nil) is nil.
func Fail(err error) error {
	if err == nil {
		return nil
	}
	return failure{err: err}
}

// IsFailure reports whether err (or an error it wraps) was made by Fail.
func IsFailure(err error) bool {
	var f failure
	return errors.As(err, &f)
}
