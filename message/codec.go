package message

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/sagaflow/sagaflow/internal/recordjson"
)

// Codec encodes payloads to bytes and back. JSON is the default; another
// codec can be given to a Registry.
type Codec interface {
	// Marshal encodes v.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into the value v points to.
	Unmarshal(data []byte, v any) error
	// Name names the codec, for content-type headers.
	Name() string
}

// JSON is the default Codec. It rejects unknown fields, so that a payload
// that does not fit its registered type is reported rather than half-read.
type JSON struct{}

// Marshal encodes v as JSON.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes JSON data into v, rejecting unknown fields and
// trailing data. It checks no nesting depth: payloads from outside are
// checked with their envelope (UnmarshalEnvelope), and what the engine
// stores wraps a saga's input and state a few levels deeper than they
// arrived, which must always decode.
func (JSON) Unmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

// Name is "json".
func (JSON) Name() string { return "json" }

// DefaultMaxSize is the largest encoded envelope accepted by default (1 MiB).
const DefaultMaxSize = 1 << 20

// MarshalEnvelope encodes a whole envelope for a transport or store,
// refusing one larger than maxSize bytes (0 means DefaultMaxSize).
func MarshalEnvelope(e Envelope, maxSize int) ([]byte, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	// Without HTML escaping: escaping <, > and & in the payload would make
	// the bytes a consumer gets differ from those published.
	data, err := recordjson.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode envelope %q of type %q: %w", e.ID, e.Type, err)
	}
	if len(data) > maxSize {
		return nil, fmt.Errorf("%w: message %q of type %q is %d bytes, limit %d", ErrPayloadTooLarge, e.ID, e.Type, len(data), maxSize)
	}
	return data, nil
}

// UnmarshalEnvelope decodes and validates an envelope produced by
// MarshalEnvelope, refusing input larger than maxSize (0 means
// DefaultMaxSize) by its length and input nested deeper than
// MaxEnvelopeDepth by a byte scan, both before any parse. The payload is
// left encoded; decode it with Registry.Decode.
func UnmarshalEnvelope(data []byte, maxSize int) (Envelope, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if len(data) > maxSize {
		return Envelope{}, fmt.Errorf("%w: %d bytes, limit %d", ErrPayloadTooLarge, len(data), maxSize)
	}
	if err := CheckDepth(data, MaxEnvelopeDepth); err != nil {
		return Envelope{}, fmt.Errorf("%w: envelope: %w", ErrMalformed, err)
	}
	var e Envelope
	if err := recordjson.Unmarshal(data, &e); err != nil {
		return Envelope{}, fmt.Errorf("%w: envelope is not valid JSON: %w", ErrMalformed, err)
	}
	if err := e.Validate(); err != nil {
		return Envelope{}, err
	}
	return e, nil
}
