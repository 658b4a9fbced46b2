package actors

import (
	"errors"
	"fmt"

	"github.com/sagaflow/sagaflow/message"
)

// ErrMissingHeader: a message lacks a field or header its kind needs to be
// handled correctly; it is dead-lettered with the name of what is missing
// (I6) instead of being handled in a way that cannot end well.
var ErrMissingHeader = errors.New("missing required header")

// admit checks the fields and headers that a delivery's kind needs beyond
// what message.Envelope.Validate checks for every envelope:
//
//   - a command that a saga sends to a participant (SagaID set, consumed
//     from a queue other than the saga queue) must name where its reply
//     goes (message.HeaderReplyTo), or the participant would act and the
//     saga would wait for a reply that never comes (the control messages
//     the engine sends to its own saga queue need none);
//   - a reply must name the command it answers (CausationID) and its saga
//     (SagaID), or it cannot be matched to a step.
func admit(e message.Envelope, sagaQueue bool) error {
	switch e.Kind {
	case message.KindCommand:
		if !sagaQueue && e.SagaID != "" && e.Header(message.HeaderReplyTo) == "" {
			return fmt.Errorf("%w: command %s (%s) for saga %s has no %q header, so its reply would have nowhere to go", ErrMissingHeader, e.ID, e.Type, e.SagaID, message.HeaderReplyTo)
		}
	case message.KindReply:
		if e.CausationID == "" {
			return fmt.Errorf("%w: reply %s (%s) has no causation_id naming the command it answers", ErrMissingHeader, e.ID, e.Type)
		}
		if e.SagaID == "" {
			return fmt.Errorf("%w: reply %s (%s) has no saga_id", ErrMissingHeader, e.ID, e.Type)
		}
	}
	return nil
}
