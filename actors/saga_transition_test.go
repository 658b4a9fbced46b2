package actors

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/workflows"
)

// transitionGen makes saga transitions whose strings, times, raw JSON and
// optional parts reach the corners where JSON encoders differ.
type transitionGen struct{ r *rand.Rand }

var transitionPieces = []string{
	"a", "order-17", " ", "<", ">", "&", "\"", "\\", "/", "\n", "\x00", "\x1f", "\x7f",
	"é", "日本", "😀", "\u2028", "\u2029", "\xff", "\xed\xa0\x80",
}

func (g transitionGen) str() string {
	var b strings.Builder
	for range g.r.IntN(5) {
		b.WriteString(transitionPieces[g.r.IntN(len(transitionPieces))])
	}
	return b.String()
}

var transitionZones = []*time.Location{time.UTC, time.FixedZone("", 3600), time.FixedZone("X", -(5*3600 + 30*60))}

func (g transitionGen) time() time.Time {
	switch g.r.IntN(4) {
	case 0:
		return time.Time{}
	case 1:
		return time.Now() // with a monotonic reading
	default:
		return time.Unix(0, g.r.Int64N(1<<62)).In(transitionZones[g.r.IntN(len(transitionZones))])
	}
}

func (g transitionGen) raw() json.RawMessage {
	if g.r.IntN(6) == 0 {
		return nil
	}
	return json.RawMessage([]string{`{}`, `{ "id" : "a<b" ,"n":1.50}`, "[1, -0,\n\t1e5]", `"\u00e9"`, `null`}[g.r.IntN(5)])
}

func (g transitionGen) envelope() *message.Envelope {
	if g.r.IntN(3) == 0 {
		return nil
	}
	e := &message.Envelope{ID: g.str(), Kind: message.KindCommand, Type: g.str(), Key: g.str(), OccurredAt: g.time(), Payload: g.raw()}
	if g.r.IntN(2) == 0 {
		e.Headers = map[string]string{g.str(): g.str(), "sagaflow-reply-to": g.str()}
	}
	return e
}

func (g transitionGen) transition() *SagaTransition {
	t := &SagaTransition{Instance: workflows.Instance{
		ID: g.str(), Workflow: g.str(), Version: g.r.IntN(3), Status: workflows.Status(g.str()), CorrelationID: g.str(),
		Step: g.r.IntN(4), Attempt: g.r.IntN(3), Pending: g.envelope(), TimerID: g.str(),
		TimerPurpose: workflows.TimerPurpose(g.str()), TimerDue: g.time(), Uncertain: g.r.IntN(2) == 0,
		Cancelled: g.r.IntN(2) == 0, DeadlineTimerID: g.str(), DeadlineDue: g.time(), Error: g.str(),
		Input: g.raw(), State: g.raw(), CreatedAt: g.time(), UpdatedAt: g.time(),
	}}
	for range g.r.IntN(3) {
		t.Records = append(t.Records, workflows.Record{Event: g.str(), Step: g.str(), Attempt: g.r.IntN(3), Detail: g.str(), MessageID: g.str(), At: g.time()})
		t.Instance.Done = append(t.Instance.Done, g.r.IntN(5))
	}
	if g.r.IntN(3) == 0 {
		t.Instance.Wait = &workflows.Wait{Kind: workflows.StepKind(g.str()), Name: g.str()}
	}
	for range g.r.IntN(3) {
		t.Instance.Branches = append(t.Instance.Branches, workflows.BranchState{
			Step: g.r.IntN(3), Status: workflows.BranchStatus(g.str()), Attempt: g.r.IntN(2), Pending: g.envelope(),
			TimerID: g.str(), TimerDue: g.time(), Uncertain: g.r.IntN(2) == 0,
		})
	}
	if g.r.IntN(3) == 0 {
		t.Instance.Parent = &workflows.ParentRef{ID: g.str(), ReplyTo: g.str()}
	}
	for range g.r.IntN(3) {
		t.Instance.Inbox = append(t.Instance.Inbox, workflows.Received{Kind: workflows.StepKind(g.str()), Name: g.str(), MessageID: g.str(), Payload: g.raw()})
	}
	return t
}

// stdTransition is what a transition's payload must be: encoding/json's
// Encoder without HTML escaping, newline trimmed.
func stdTransition(t *testing.T, v *SagaTransition) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// TestTransitionPayloadIsEncodingJSONs: on 2,000 generated transitions
// (every optional part of an instance, strings with <>& and invalid UTF-8,
// times in several zones, raw JSON with white space), the event the
// registry builds (a record type, see RegisterMessages) carries the bytes
// encoding/json writes without HTML escaping, decodes through the
// registry to the transition it was made from (as encoding/json reads it
// back), and names the registered type, the saga as its key and a fresh
// ID.
func TestTransitionPayloadIsEncodingJSONs(t *testing.T) {
	reg := message.NewRegistry(nil)
	if err := RegisterMessages(reg); err != nil {
		t.Fatal(err)
	}
	g := transitionGen{rand.New(rand.NewPCG(3, 4))}
	seen := map[string]bool{}
	for i := range 2000 {
		tr := g.transition()
		ev, err := reg.New(message.KindEvent, tr.Instance.ID, tr)
		if err != nil {
			t.Fatalf("transition %d: %v", i, err)
		}
		if want := stdTransition(t, tr); !bytes.Equal(ev.Payload, want) {
			t.Fatalf("transition %d:\n got %s\nwant %s", i, ev.Payload, want)
		}
		if ev.Type != TypeSagaTransition || ev.Kind != message.KindEvent || ev.Key != tr.Instance.ID || ev.ID == "" || seen[ev.ID] {
			t.Fatalf("transition %d: envelope %+v; want a fresh ID, kind event, type %s, key %q", i, ev, TypeSagaTransition, tr.Instance.ID)
		}
		seen[ev.ID] = true
		got, err := reg.DecodeEnvelope(ev)
		if err != nil {
			t.Fatalf("transition %d: decode: %v", i, err)
		}
		var want SagaTransition
		if err := json.Unmarshal(ev.Payload, &want); err != nil {
			t.Fatalf("transition %d: encoding/json cannot read the payload: %v", i, err)
		}
		if !reflect.DeepEqual(got, &want) {
			t.Fatalf("transition %d decodes to\n %+v\nwant %+v", i, got, &want)
		}
	}
}

// TestTransitionWithInvalidStateIsRefused: state that is not JSON is an
// error naming the event type, not a commit that cannot be read back.
func TestTransitionWithInvalidStateIsRefused(t *testing.T) {
	reg := message.NewRegistry(nil)
	if err := RegisterMessages(reg); err != nil {
		t.Fatal(err)
	}
	_, err := reg.New(message.KindEvent, "s1", &SagaTransition{Instance: workflows.Instance{ID: "s1", State: json.RawMessage(`{"a":`)}})
	if err == nil || !strings.Contains(err.Error(), TypeSagaTransition) {
		t.Fatalf("encode with invalid state = %v; want an error naming %s", err, TypeSagaTransition)
	}
}

// countingCodec is a codec other than message.JSON, counting its Marshal calls.
type countingCodec struct {
	message.JSON
	marshals *int
}

func (c countingCodec) Marshal(v any) ([]byte, error) {
	*c.marshals++
	return c.JSON.Marshal(v)
}

// TestTransitionWithAnotherCodecUsesThatCodec: a registry with a codec of
// its own encodes the transition itself.
func TestTransitionWithAnotherCodecUsesThatCodec(t *testing.T) {
	var n int
	reg := message.NewRegistry(countingCodec{marshals: &n})
	if err := RegisterMessages(reg); err != nil {
		t.Fatal(err)
	}
	ev, err := reg.New(message.KindEvent, "s1", &SagaTransition{Instance: workflows.Instance{ID: "s1", Status: workflows.StatusRunning}})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || ev.Type != TypeSagaTransition || ev.Key != "s1" {
		t.Fatalf("codec called %d times, envelope %+v; want the registry's codec called once for a %s keyed s1", n, ev, TypeSagaTransition)
	}
}
