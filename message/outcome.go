package message

// Reply types every engine registers. A success reply carries any registered
// type; a reply of type FailureType carries a Failure.
const (
	// FailureType is the type of a reply that reports a failed command.
	FailureType = "sagaflow.CommandFailed.v1"
)

// Failure is the payload of a reply saying a command failed. A retryable
// failure is technical (try again later); a non-retryable one is a business
// rejection that starts compensation.
type Failure struct {
	// Reason says what went wrong, in words for an operator.
	Reason string `json:"reason"`
	// Retryable is true when trying the same command again may succeed.
	Retryable bool `json:"retryable"`
}

// RegisterBuiltins registers the types every engine and participant share.
func RegisterBuiltins(r *Registry) error {
	if err := Register[Failure](r, FailureType); err != nil {
		return err
	}
	return Register[Accepted](r, AcceptedType)
}

// AcceptedType is the type of the success reply to a command that caused no
// event.
const AcceptedType = "sagaflow.CommandAccepted.v1"

// Accepted is the payload of a success reply that carries no result.
type Accepted struct{}
