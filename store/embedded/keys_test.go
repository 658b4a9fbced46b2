package embedded

import (
	"encoding/json"
	"testing"
)

func TestEncodeJSONKeepsPayloadBytesAndOwnsItsResult(t *testing.T) {
	type doc struct {
		Payload json.RawMessage `json:"payload"`
	}
	first, err := encodeJSON(doc{Payload: json.RawMessage(`{"html":"<a&b>"}`)})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"payload":{"html":"<a&b>"}}`
	if string(first) != want {
		t.Errorf("encoded %s, want %s (no HTML escaping, no newline)", first, want)
	}
	// The encoder's buffer is reused: a later encoding must not show
	// through an earlier result.
	for range 3 {
		if _, err := encodeJSON(doc{Payload: json.RawMessage(`{"other":"value that is longer"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if string(first) != want {
		t.Errorf("the first result changed to %s after later encodings", first)
	}
	if _, err := encodeJSON(doc{Payload: json.RawMessage(`{"broken"`)}); err == nil {
		t.Error("invalid payload JSON was encoded without an error")
	}
	if got, err := encodeJSON(doc{Payload: json.RawMessage(`1`)}); err != nil || string(got) != `{"payload":1}` {
		t.Errorf("after an error: %s, %v; want {\"payload\":1}", got, err)
	}
}
