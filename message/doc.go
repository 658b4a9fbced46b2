// Package message is the leaf of sagaflow: the Envelope that carries every
// command, event and reply across a process boundary, the type registry that
// maps versioned type names such as "inventory.ReserveStock.v1" to Go structs,
// and the codec that turns payloads into bytes and back.
//
// It imports nothing of sagaflow's own. It upholds the decoding half of
// invariant I6: an unknown type, a malformed payload or an oversized message is
// reported as an error that names the type and the problem (ErrUnknownType,
// ErrMalformed, ErrPayloadTooLarge), never as a panic.
//
// Schema evolution: Upcast registers, per (type name, version), a function
// that turns a payload of that version into the next; Decode of an older,
// unregistered version runs the chain up to the registered version.
package message
