// Package recordjson encodes and decodes sagaflow's own record types
// (message envelopes, the store's commits, outbox entries, timers, stream
// meta and snapshots, and the payloads of types registered with
// message.RegisterRecord) on the hot path, with github.com/goccy/go-json.
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
	"sync"

	gojson "github.com/goccy/go-json"
)

// Marshal returns v's JSON encoding without HTML escaping and without a
// trailing newline: what encoding/json's Encoder with SetEscapeHTML(false)
// writes, newline trimmed. The result is a fresh slice of its own size.
func Marshal(v any) ([]byte, error) {
	return gojson.MarshalWithOption(v, gojson.DisableHTMLEscape())
}

// MarshalAppend appends to dst the bytes Marshal returns for v, and
// returns the extended slice. It lets a caller encode several records
// into one buffer it reuses, where Marshal allocates each result. On an
// error dst is returned as it was (its length unchanged).
func MarshalAppend(dst []byte, v any) ([]byte, error) {
	a := appenders.Get().(*appender)
	a.buf = dst
	err := a.enc.Encode(v)
	out := a.buf
	a.buf = nil
	appenders.Put(a)
	if err != nil {
		return dst, err
	}
	// The Encoder writes the value and a newline in one Write.
	return out[:len(out)-1], nil
}

// appender is a goccy/go-json Encoder writing to its own buffer, pooled
// so that MarshalAppend allocates neither.
type appender struct {
	buf []byte
	enc *gojson.Encoder
}

// Write implements io.Writer for the Encoder.
func (a *appender) Write(p []byte) (int, error) {
	a.buf = append(a.buf, p...)
	return len(p), nil
}

var appenders = sync.Pool{New: func() any {
	a := &appender{}
	a.enc = gojson.NewEncoder(a)
	a.enc.SetEscapeHTML(false)
	return a
}}

// Unmarshal decodes data into v as encoding/json.Unmarshal does: it
// refuses anything but one JSON value (with surrounding white space), and
// leaves v's fields that data does not name as they were. Error messages
// may be worded differently from encoding/json's.
func Unmarshal(data []byte, v any) error {
	return gojson.Unmarshal(data, v)
}
