package message_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
)

type reserve struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

type other struct{ X int }

func newRegistry(t *testing.T) *message.Registry {
	t.Helper()
	r := message.NewRegistry(nil)
	if err := message.Register[reserve](r, "inventory.Reserve.v1"); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseType(t *testing.T) {
	cases := []struct {
		in      string
		name    string
		version int
		ok      bool
	}{
		{"inventory.ReserveStock.v1", "inventory.ReserveStock", 1, true},
		{"a.v12", "a", 12, true},
		{"inventory.ReserveStock", "", 0, false},
		{"inventory.ReserveStock.v0", "", 0, false},
		{"inventory.ReserveStock.vx", "", 0, false},
		{"inventory.ReserveStock.v", "", 0, false},
		{".v1", "", 0, false},
		{"", "", 0, false},
	}
	for _, c := range cases {
		name, version, err := message.ParseType(c.in)
		if (err == nil) != c.ok || name != c.name || version != c.version {
			t.Errorf("ParseType(%q) = %q, %d, %v; want %q, %d, ok=%v", c.in, name, version, err, c.name, c.version, c.ok)
		}
		if err != nil && !errors.Is(err, message.ErrInvalidType) {
			t.Errorf("ParseType(%q) error %v does not wrap ErrInvalidType", c.in, err)
		}
	}
	if got := message.TypeName("a.B", 3); got != "a.B.v3" {
		t.Errorf("TypeName = %q", got)
	}
}

func TestRegistryRoundTripAndConflicts(t *testing.T) {
	r := newRegistry(t)
	typeName, payload, err := r.Encode(reserve{SKU: "book", Qty: 2})
	if err != nil || typeName != "inventory.Reserve.v1" {
		t.Fatalf("Encode = %q, %v", typeName, err)
	}
	v, err := r.Decode(typeName, payload)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.(*reserve); *got != (reserve{SKU: "book", Qty: 2}) {
		t.Errorf("decoded %+v", got)
	}
	// Same pair again: fine. Conflicts: errors.
	if err := message.Register[reserve](r, "inventory.Reserve.v1"); err != nil {
		t.Errorf("re-registering the same pair: %v", err)
	}
	if err := message.Register[other](r, "inventory.Reserve.v1"); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Errorf("name taken by another type: err = %v", err)
	}
	if err := message.Register[reserve](r, "inventory.Reserve.v2"); err == nil {
		t.Error("type registered under a second name: no error")
	}
	if err := message.Register[int](r, "x.Int.v1"); err == nil {
		t.Error("non-struct type registered")
	}
	if err := message.Register[other](r, "no-version"); !errors.Is(err, message.ErrInvalidType) {
		t.Errorf("unversioned name: err = %v", err)
	}
	if _, _, err := r.Encode(other{}); !errors.Is(err, message.ErrUnknownType) {
		t.Errorf("encode of unregistered type: err = %v", err)
	}
}

func TestDecodeErrorsNameTheTypeAndTheProblem(t *testing.T) {
	r := newRegistry(t)
	cases := []struct {
		name, typeName, payload string
		sentinel                error
		mentions                []string
	}{
		{"unknown type", "billing.Charge.v1", `{}`, message.ErrUnknownType, []string{"billing.Charge.v1", "not registered"}},
		{"not JSON", "inventory.Reserve.v1", `{"sku":`, message.ErrMalformed, []string{"inventory.Reserve.v1"}},
		{"wrong field type", "inventory.Reserve.v1", `{"qty":"two"}`, message.ErrMalformed, []string{"inventory.Reserve.v1", "qty"}},
		{"unknown field", "inventory.Reserve.v1", `{"colour":"red"}`, message.ErrMalformed, []string{"colour"}},
		{"trailing data", "inventory.Reserve.v1", `{} {}`, message.ErrMalformed, []string{"trailing"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := r.Decode(c.typeName, []byte(c.payload))
			if !errors.Is(err, c.sentinel) {
				t.Fatalf("err = %v, want %v", err, c.sentinel)
			}
			for _, m := range c.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func validEnvelope() message.Envelope {
	return message.Envelope{
		ID: message.NewID(), Kind: message.KindCommand, Type: "inventory.Reserve.v1", Source: "saga",
		Destination: "inventory", Key: "order-1", SagaID: "s1", CorrelationID: "c1", CausationID: "m0",
		Sequence: 3, OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 6000000, time.UTC),
		Headers: map[string]string{message.HeaderTraceParent: "00-abc-def-01"}, Payload: json.RawMessage(`{"sku":"a","qty":1}`),
	}
}

func TestEnvelopeRoundTripAndValidation(t *testing.T) {
	e := validEnvelope()
	data, err := message.MarshalEnvelope(e, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := message.UnmarshalEnvelope(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.Type != e.Type || got.Key != e.Key || !got.OccurredAt.Equal(e.OccurredAt) ||
		got.Header(message.HeaderTraceParent) != "00-abc-def-01" || string(got.Payload) != string(e.Payload) || got.Sequence != 3 {
		t.Errorf("round trip changed the envelope:\n got %+v\nwant %+v", got, e)
	}

	broken := []struct {
		name    string
		mutate  func(*message.Envelope)
		mention string
	}{
		{"no id", func(e *message.Envelope) { e.ID = "" }, "missing id"},
		{"bad kind", func(e *message.Envelope) { e.Kind = "query" }, `kind "query"`},
		{"bad type", func(e *message.Envelope) { e.Type = "Reserve" }, `"Reserve"`},
		{"no key", func(e *message.Envelope) { e.Key = "" }, "missing key"},
		{"command without destination", func(e *message.Envelope) { e.Destination = "" }, "without destination"},
	}
	for _, b := range broken {
		t.Run(b.name, func(t *testing.T) {
			e := validEnvelope()
			b.mutate(&e)
			err := e.Validate()
			if !errors.Is(err, message.ErrInvalidEnvelope) || !strings.Contains(err.Error(), b.mention) {
				t.Errorf("Validate = %v, want ErrInvalidEnvelope mentioning %q", err, b.mention)
			}
			data, _ := json.Marshal(e)
			if _, err := message.UnmarshalEnvelope(data, 0); !errors.Is(err, message.ErrInvalidEnvelope) {
				t.Errorf("UnmarshalEnvelope accepted it: %v", err)
			}
		})
	}

	if _, err := message.UnmarshalEnvelope([]byte("{nope"), 0); !errors.Is(err, message.ErrMalformed) {
		t.Errorf("garbage: err = %v, want ErrMalformed", err)
	}
	big := validEnvelope()
	big.Payload = json.RawMessage(`"` + strings.Repeat("x", 2000) + `"`)
	if _, err := message.MarshalEnvelope(big, 1000); !errors.Is(err, message.ErrPayloadTooLarge) {
		t.Errorf("oversized marshal: err = %v", err)
	}
	data, _ = json.Marshal(big)
	if _, err := message.UnmarshalEnvelope(data, 1000); !errors.Is(err, message.ErrPayloadTooLarge) {
		t.Errorf("oversized unmarshal: err = %v", err)
	}
}

func TestMarshalEnvelopeKeepsPayloadBytes(t *testing.T) {
	e := validEnvelope()
	e.Payload = json.RawMessage(`{"sku":"<b> & \u00e9 é"}`)
	data, err := message.MarshalEnvelope(e, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := message.UnmarshalEnvelope(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Payload) != string(e.Payload) {
		t.Errorf("payload changed in transit: %s, want %s", got.Payload, e.Payload)
	}
}

func TestCloneDoesNotShareHeadersOrPayload(t *testing.T) {
	e := validEnvelope()
	c := e.Clone()
	c.SetHeader(message.HeaderTraceParent, "changed")
	c.Payload[0] = '['
	if e.Header(message.HeaderTraceParent) == "changed" || e.Payload[0] == '[' {
		t.Error("Clone shares memory with the original")
	}
}

// FuzzUnmarshalEnvelope: no input makes decoding panic, and whatever it
// accepts is valid and survives a round trip.
func FuzzUnmarshalEnvelope(f *testing.F) {
	good, _ := message.MarshalEnvelope(validEnvelope(), 0)
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"id":"x","kind":"event","type":"a.v1","key":"k","payload":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := message.UnmarshalEnvelope(data, 4096)
		if err != nil {
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("accepted an invalid envelope: %v", err)
		}
		if _, err := message.MarshalEnvelope(e, 1<<20); err != nil {
			t.Fatalf("accepted envelope does not marshal: %v", err)
		}
	})
}

// FuzzRegistryDecode: decoding arbitrary bytes never panics.
func FuzzRegistryDecode(f *testing.F) {
	f.Add([]byte(`{"sku":"a","qty":1}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := message.NewRegistry(nil)
		message.MustRegister[reserve](r, "inventory.Reserve.v1")
		if _, err := r.Decode("inventory.Reserve.v1", data); err != nil && !errors.Is(err, message.ErrMalformed) {
			t.Fatalf("unexpected error kind: %v", err)
		}
	})
}
