package recordjson_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/recordjson"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

// stdMarshal is what recordjson.Marshal must match: encoding/json's
// Encoder without HTML escaping, newline trimmed.
func stdMarshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// gen makes random records whose strings, times, headers and payloads
// reach the corners where JSON encoders differ.
type gen struct{ r *rand.Rand }

var pieces = []string{
	"a", "Z", "order-17", " ", "<", ">", "&", "\"", "\\", "/", "\n", "\t", "\x00", "\x1f", "\x7f",
	"é", "日本", "😀", "\u2028", "\u2029", "\ufeff", "\xff", "\xc3", "\xed\xa0\x80", "\\u0041",
}

func (g gen) str() string {
	var b strings.Builder
	for range g.r.IntN(6) {
		b.WriteString(pieces[g.r.IntN(len(pieces))])
	}
	return b.String()
}

func (g gen) strs() []string {
	if g.r.IntN(3) == 0 {
		return nil
	}
	out := make([]string, g.r.IntN(3)+1)
	for i := range out {
		out[i] = g.str()
	}
	return out
}

var zones = []*time.Location{time.UTC, time.FixedZone("", 3600), time.FixedZone("X", -(5*3600 + 30*60)), time.FixedZone("", 0)}

func (g gen) time() time.Time {
	switch g.r.IntN(5) {
	case 0:
		return time.Time{}
	case 1:
		return time.Now() // with a monotonic reading
	default:
		return time.Unix(0, g.r.Int64N(1<<62)).In(zones[g.r.IntN(len(zones))])
	}
}

// value is random valid JSON text, with white space that encoding
// compacts and number spellings it keeps.
func (g gen) value(depth int) string {
	ws := []string{"", " ", "\n\t", "  "}[g.r.IntN(4)]
	switch k := g.r.IntN(8); {
	case depth > 2 || k == 0:
		return []string{"1", "-0", "1.50", "1e5", "-2E-3", "true", "false", "null", "12345678901234567890"}[g.r.IntN(9)]
	case k <= 2:
		s, _ := json.Marshal(g.str())
		return string(s)
	case k <= 4:
		parts := make([]string, g.r.IntN(3))
		for i := range parts {
			parts[i] = ws + g.value(depth+1) + ws
		}
		return "[" + strings.Join(parts, ",") + "]"
	default:
		parts := make([]string, g.r.IntN(3))
		for i := range parts {
			key, _ := json.Marshal(g.str())
			parts[i] = ws + string(key) + ws + ":" + g.value(depth+1)
		}
		return "{" + strings.Join(parts, ",") + ws + "}"
	}
}

func (g gen) payload() json.RawMessage {
	if g.r.IntN(6) == 0 {
		return nil
	}
	return json.RawMessage(g.value(0))
}

func (g gen) headers() map[string]string {
	switch g.r.IntN(3) {
	case 0:
		return nil
	case 1:
		return map[string]string{}
	}
	h := map[string]string{}
	for range g.r.IntN(4) + 1 {
		h[g.str()] = g.str()
	}
	return h
}

func (g gen) envelope() message.Envelope {
	return message.Envelope{
		ID: g.str(), Kind: message.Kind(g.str()), Type: g.str(), Source: g.str(), Destination: g.str(),
		Key: g.str(), SagaID: g.str(), CorrelationID: g.str(), CausationID: g.str(),
		Sequence: g.r.Uint64() >> g.r.IntN(64), OccurredAt: g.time(), Headers: g.headers(), Payload: g.payload(),
	}
}

func (g gen) envelopes() []message.Envelope {
	if g.r.IntN(3) == 0 {
		return nil
	}
	out := make([]message.Envelope, g.r.IntN(3)+1)
	for i := range out {
		out[i] = g.envelope()
	}
	return out
}

func (g gen) timer() store.Timer {
	return store.Timer{ID: g.str(), Stream: g.str(), DueAt: g.time(), Message: g.envelope()}
}

func (g gen) commit() store.Commit {
	c := store.Commit{
		Stream: g.str(), Version: g.r.Uint64(), Events: g.envelopes(), Outbox: g.envelopes(),
		Handled: g.strs(), CancelTimers: g.strs(), At: g.time(),
	}
	for range g.r.IntN(3) {
		c.Timers = append(c.Timers, g.timer())
	}
	if g.r.IntN(2) == 0 {
		c.Meta = &store.Meta{Kind: g.str(), Type: g.str(), Status: g.str(), CorrelationID: g.str(), CreatedAt: g.time(), UpdatedAt: g.time()}
	}
	return c
}

func (g gen) record() any {
	switch g.r.IntN(5) {
	case 0:
		return g.envelope()
	case 1:
		return g.timer()
	case 2:
		return store.OutboxEntry{ID: g.str(), Stream: g.str(), Version: g.r.Uint64(), Message: g.envelope(), At: g.time()}
	case 3:
		var state []byte
		if g.r.IntN(4) > 0 {
			state = []byte(g.str())
		}
		return store.Snapshot{Stream: g.str(), Version: g.r.Uint64(), State: state, At: g.time()}
	default:
		return g.commit()
	}
}

// TestMarshalMatchesEncodingJSON: on generated records, Marshal writes
// encoding/json's bytes, and Unmarshal decodes them to encoding/json's
// values.
func TestMarshalMatchesEncodingJSON(t *testing.T) {
	g := gen{rand.New(rand.NewPCG(1, 2))}
	for i := range 5000 {
		rec := g.record()
		want, wantErr := stdMarshal(rec)
		got, err := recordjson.Marshal(rec)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("record %d (%T): error %v, encoding/json's %v", i, rec, err, wantErr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("record %d (%T):\n got %q\nwant %q", i, rec, got, want)
		}
		prefix := []byte(fmt.Sprintf("record %d:", i))
		appended, appendErr := recordjson.MarshalAppend(bytes.Clone(prefix), rec)
		if (appendErr == nil) != (wantErr == nil) {
			t.Fatalf("record %d (%T): MarshalAppend's error %v, encoding/json's %v", i, rec, appendErr, wantErr)
		}
		if wantAppended := append(bytes.Clone(prefix), want...); !bytes.Equal(appended, wantAppended) {
			t.Fatalf("record %d (%T): MarshalAppend wrote\n %q\nwant %q", i, rec, appended, wantAppended)
		}
		if err != nil {
			continue
		}
		fromStd := reflect.New(reflect.TypeOf(rec))
		fromOurs := reflect.New(reflect.TypeOf(rec))
		if err := json.Unmarshal(want, fromStd.Interface()); err != nil {
			t.Fatalf("record %d: encoding/json cannot decode its own output: %v", i, err)
		}
		if err := recordjson.Unmarshal(want, fromOurs.Interface()); err != nil {
			t.Fatalf("record %d (%T): Unmarshal(%q): %v", i, rec, want, err)
		}
		if !reflect.DeepEqual(fromOurs.Interface(), fromStd.Interface()) {
			t.Fatalf("record %d (%T) decodes differently:\n got %+v\nwant %+v", i, rec, fromOurs.Elem(), fromStd.Elem())
		}
	}
}

// TestMarshalRefusesInvalidPayloads: a payload that is not one JSON value
// is refused, as encoding/json refuses it, so no record is written that
// cannot be read back.
func TestMarshalRefusesInvalidPayloads(t *testing.T) {
	for _, p := range []string{`{bad`, ``, `  `, `1 2`, `{"a":1}x`, `[1,]`, `"\x01"`, `{"a":1`, `nul`} {
		e := message.Envelope{ID: "m-1", Payload: json.RawMessage(p)}
		if _, err := stdMarshal(e); err == nil {
			t.Fatalf("encoding/json accepts payload %q: the case is wrong", p)
		}
		if b, err := recordjson.Marshal(e); err == nil {
			t.Errorf("payload %q: Marshal wrote %q, want an error", p, b)
		}
		dst := []byte("kept")
		if b, err := recordjson.MarshalAppend(dst, e); err == nil || string(b) != "kept" {
			t.Errorf("payload %q: MarshalAppend returned %q, %v; want %q and an error", p, b, err, "kept")
		}
	}
}

// TestUnmarshalRefusesWhatEncodingJSONRefuses: input that is not one
// valid envelope is refused by both.
func TestUnmarshalRefusesWhatEncodingJSONRefuses(t *testing.T) {
	for _, in := range []string{
		``, `[1]`, `{"id":1}`, `{"headers":{"a":1}}`, `{"occurred_at":"bad"}`, `{"payload":1}x`,
		`{"id":"a"`, `{"sequence":-1}`, `{"sequence":1.5}`, `{"id":"\x01"}`, `{"payload":{bad}}`, `{} {}`,
	} {
		var a, b message.Envelope
		if err := json.Unmarshal([]byte(in), &a); err == nil {
			t.Fatalf("encoding/json accepts %q: the case is wrong", in)
		}
		if err := recordjson.Unmarshal([]byte(in), &b); err == nil {
			t.Errorf("Unmarshal(%q) = %+v, want an error", in, b)
		}
	}
}

// FuzzUnmarshalEnvelope: on any input, Unmarshal and encoding/json agree
// on whether it is an envelope, and on the envelope.
func FuzzUnmarshalEnvelope(f *testing.F) {
	g := gen{rand.New(rand.NewPCG(3, 4))}
	for range 16 {
		b, err := stdMarshal(g.envelope())
		if err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"ID":"upper case key","Payload":1}`))
	f.Add([]byte(`{"id":"a","id":"b","payload":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var want, got message.Envelope
		wantErr := json.Unmarshal(data, &want)
		err := recordjson.Unmarshal(data, &got)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("Unmarshal(%q): error %v, encoding/json's %v", data, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("Unmarshal(%q):\n got %+v\nwant %+v", data, got, want)
		}
	})
}

// BenchmarkMarshalCommit compares the two libraries on a saga step's
// commit (an event, one command in the outbox, a timer, meta).
func BenchmarkMarshalCommit(b *testing.B) {
	at := time.Date(2026, 12, 3, 6, 19, 26, 233176663, time.UTC)
	cmd := message.Envelope{ID: "01a23a8e-ca99-72c3-ac68-cc6876980de0", Kind: message.KindCommand, Type: "bench.DoStep.v1",
		Source: "sfbench", Destination: "sfbench-step3", Key: "c0-2943", SagaID: "c0-2943", OccurredAt: at,
		Headers: map[string]string{"sagaflow-reply-to": "sfbench"}, Payload: json.RawMessage(`{"step":3}`)}
	ev := cmd
	ev.Kind, ev.Type, ev.Sequence = message.KindEvent, "sagaflow.SagaTransitioned.v1", 3
	ev.Payload = json.RawMessage(fmt.Sprintf(`{"records":[{"event":"step.started","step":"step3","attempt":1}],"instance":{"id":"c0-2943","status":"running","pending":%s}}`, mustStd(b, cmd)))
	c := store.Commit{Stream: "saga/c0-2943", Version: 3, Events: []message.Envelope{ev}, Outbox: []message.Envelope{cmd},
		Handled: []string{"01a23a8e-ca62-7261-9b4d-38a198e332ec"}, Timers: []store.Timer{{ID: "t-1", Stream: "saga/c0-2943", DueAt: at, Message: cmd}},
		Meta: &store.Meta{Kind: "saga", Type: "bench.ThreeSteps", Status: "running", CreatedAt: at, UpdatedAt: at}, At: at}
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			if _, err := stdMarshal(c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("recordjson", func(b *testing.B) {
		for b.Loop() {
			if _, err := recordjson.Marshal(c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func mustStd(b *testing.B, v any) []byte {
	out, err := stdMarshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// TestMarshalKeepsPayloadBytesAndOwnsItsResult: payload bytes come back
// as given (no HTML escaping, no newline), a result is not changed by
// later encodings, and an error leaves the next encoding sound.
func TestMarshalKeepsPayloadBytesAndOwnsItsResult(t *testing.T) {
	type doc struct {
		Payload json.RawMessage `json:"payload"`
	}
	first, err := recordjson.Marshal(doc{Payload: json.RawMessage(`{"html":"<a&b>"}`)})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"payload":{"html":"<a&b>"}}`
	if string(first) != want {
		t.Errorf("encoded %s, want %s (no HTML escaping, no newline)", first, want)
	}
	for range 3 {
		if _, err := recordjson.Marshal(doc{Payload: json.RawMessage(`{"other":"value that is longer"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if string(first) != want {
		t.Errorf("the first result changed to %s after later encodings", first)
	}
	if _, err := recordjson.Marshal(doc{Payload: json.RawMessage(`{"broken"`)}); err == nil {
		t.Error("invalid payload JSON was encoded without an error")
	}
	if got, err := recordjson.Marshal(doc{Payload: json.RawMessage(`1`)}); err != nil || string(got) != `{"payload":1}` {
		t.Errorf("after an error: %s, %v; want {\"payload\":1}", got, err)
	}
}
