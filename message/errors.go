package message

import "errors"

// Sentinel errors; test for them with errors.Is. Returned errors wrap them
// with the type name and the problem.
var (
	// ErrUnknownType: no Go type is registered under the message's type name.
	ErrUnknownType = errors.New("unknown message type")
	// ErrMalformed: the bytes are not a valid envelope or payload.
	ErrMalformed = errors.New("malformed message")
	// ErrInvalidEnvelope: an envelope lacks a field routing needs.
	ErrInvalidEnvelope = errors.New("invalid envelope")
	// ErrPayloadTooLarge: a message is larger than the configured limit.
	ErrPayloadTooLarge = errors.New("message too large")
	// ErrTooDeep: JSON arrays and objects are nested deeper than the limit
	// (MaxDepth); the input is refused before it is parsed.
	ErrTooDeep = errors.New("JSON nested too deeply")
	// ErrInvalidType: a type name is not of the form "name.vN".
	ErrInvalidType = errors.New("invalid type name")
)
