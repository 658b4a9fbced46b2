// Package recordjson encodes and decodes sagaflow's own record types
// (message envelopes, and the store's commits, outbox entries, timers,
// stream meta and snapshots) on the hot path, with github.com/goccy/go-json.
//
// For these types goccy/go-json writes the bytes encoding/json's Encoder
// writes with SetEscapeHTML(false) (sorted map keys, invalid UTF-8 as
// U+FFFD, U+2028 and U+2029 escaped, json.RawMessage validated and
// compacted, times as RFC 3339 with nanoseconds) and decodes them to the
// same values; the package's tests compare the two libraries on generated
// records and a fuzz target on arbitrary input. It takes about a sixth of
// encoding/json's CPU on a saga commit (BenchmarkMarshalCommit), and the
// engine's profile showed encoding/json at a sixth of all its CPU.
//
// Only sagaflow's types go through here. User types (payloads, saga
// input and state) stay with encoding/json, whose behaviour users know:
// they reach a record already encoded, as a json.RawMessage.
package recordjson

import (
	gojson "github.com/goccy/go-json"
)

// Marshal returns v's JSON encoding without HTML escaping and without a
// trailing newline: what encoding/json's Encoder with SetEscapeHTML(false)
// writes, newline trimmed. The result is a fresh slice of its own size.
func Marshal(v any) ([]byte, error) {
	return gojson.MarshalWithOption(v, gojson.DisableHTMLEscape())
}

// Unmarshal decodes data into v as encoding/json.Unmarshal does: it
// refuses anything but one JSON value (with surrounding white space), and
// leaves v's fields that data does not name as they were. Error messages
// may be worded differently from encoding/json's.
func Unmarshal(data []byte, v any) error {
	return gojson.Unmarshal(data, v)
}
