package actors

import (
	"errors"

	"github.com/sagaflow/sagaflow/message"
)

// unpublishable reports whether a publish failed for a reason that lies in
// the message itself (larger than the transport's limit, or an invalid
// envelope): publishing it again can only fail again. Such an outbox entry
// is logged at error level with the reason and marked dispatched, instead
// of being retried by the relay every second for ever; the step that sent
// it then runs into its timeout and its retry policy (I6: the problem is
// reported with what was wrong, and nothing else is held up).
func unpublishable(err error) bool {
	return errors.Is(err, message.ErrPayloadTooLarge) || errors.Is(err, message.ErrInvalidEnvelope)
}
