package message

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Kind says what an envelope is: a command, an event or a reply.
type Kind string

const (
	// KindCommand is a request to one service to do something; it is
	// answered by a reply.
	KindCommand Kind = "command"
	// KindEvent says that something happened; it may have many subscribers.
	KindEvent Kind = "event"
	// KindReply is the outcome of a command, routed back to its sender.
	KindReply Kind = "reply"
)

// Valid reports whether k is one of the known kinds.
func (k Kind) Valid() bool {
	return k == KindCommand || k == KindEvent || k == KindReply
}

// Well-known header names.
const (
	// HeaderTraceParent carries the W3C trace context.
	HeaderTraceParent = "traceparent"
	// HeaderTraceState carries the W3C trace state.
	HeaderTraceState = "tracestate"
	// HeaderBaggage carries W3C baggage.
	HeaderBaggage = "baggage"
	// HeaderReplyTo names the destination a reply to a command goes to.
	HeaderReplyTo = "sagaflow-reply-to"
)

// Envelope is the unit that crosses every process boundary: the metadata the
// engine routes, deduplicates and traces by, plus an encoded payload whose Go
// type is found through a Registry by Type.
type Envelope struct {
	// ID identifies this message (a UUIDv7); consumers deduplicate by it.
	ID string `json:"id"`
	// Kind is command, event or reply.
	Kind Kind `json:"kind"`
	// Type is the payload's type name with its schema version,
	// for example "inventory.ReserveStock.v1".
	Type string `json:"type"`
	// Source names the service or engine that sent the message.
	Source string `json:"source,omitempty"`
	// Destination names the service a command or reply is for; empty for
	// events, which are routed by type to every subscriber.
	Destination string `json:"destination,omitempty"`
	// Key is the aggregate or saga ID the message is about; it selects the
	// partition and so the order the message is handled in.
	Key string `json:"key"`
	// SagaID is the saga this message belongs to, if any.
	SagaID string `json:"saga_id,omitempty"`
	// CorrelationID ties together every message of one business process.
	CorrelationID string `json:"correlation_id,omitempty"`
	// CausationID is the ID of the message that caused this one.
	CausationID string `json:"causation_id,omitempty"`
	// Sequence is an event's version within its stream (0 when not an event).
	Sequence uint64 `json:"sequence,omitempty"`
	// OccurredAt is when the message was created.
	OccurredAt time.Time `json:"occurred_at"`
	// Headers carry trace context, baggage and transport details.
	Headers map[string]string `json:"headers,omitempty"`
	// Payload is the encoded body; its Go type is registered under Type.
	Payload json.RawMessage `json:"payload"`
}

// NewID returns a new time-ordered message ID (UUIDv7).
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil {
		// NewV7 fails only when the system's random source does.
		return uuid.NewString()
	}
	return id.String()
}

// Header returns the value of header name, or "" when it is not set.
func (e *Envelope) Header(name string) string {
	if e.Headers == nil {
		return ""
	}
	return e.Headers[name]
}

// SetHeader sets header name to value, allocating the map on first use.
func (e *Envelope) SetHeader(name, value string) {
	if e.Headers == nil {
		e.Headers = make(map[string]string, 2)
	}
	e.Headers[name] = value
}

// Validate checks that the envelope carries what routing and deduplication
// need. The error wraps ErrInvalidEnvelope and lists every problem found.
func (e *Envelope) Validate() error {
	var problems []error
	if e.ID == "" {
		problems = append(problems, errors.New("missing id"))
	}
	if !e.Kind.Valid() {
		problems = append(problems, fmt.Errorf("kind %q is not command, event or reply", e.Kind))
	}
	if _, _, err := ParseType(e.Type); err != nil {
		problems = append(problems, err)
	}
	if e.Key == "" {
		problems = append(problems, errors.New("missing key"))
	}
	if (e.Kind == KindCommand || e.Kind == KindReply) && e.Destination == "" {
		problems = append(problems, fmt.Errorf("%s without destination", e.Kind))
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: message %q of type %q: %w", ErrInvalidEnvelope, e.ID, e.Type, errors.Join(problems...))
}

// Clone returns a copy whose Headers map and Payload can be changed without
// touching e.
func (e Envelope) Clone() Envelope {
	if e.Headers != nil {
		h := make(map[string]string, len(e.Headers))
		for k, v := range e.Headers {
			h[k] = v
		}
		e.Headers = h
	}
	if e.Payload != nil {
		e.Payload = append(json.RawMessage(nil), e.Payload...)
	}
	return e
}
