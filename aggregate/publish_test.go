package aggregate_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/message"
)

// The public contract: what other services see of a classification.
type classificationUpdated struct {
	Class string `json:"class"`
}

// The internal event as first written ...
type classifiedBefore struct {
	Class string `json:"class"`
	Score int    `json:"score"`
}

// ... and after the team renamed a field, changed its type and added one.
type classifiedAfter struct {
	Class      string  `json:"class"`
	Confidence float64 `json:"confidence"`
	Model      string  `json:"model"`
}

type noteAdded struct{ Text string }
type classify struct{ Class string }

func customer[E any](mapper func(*E) (*classificationUpdated, error)) *aggregate.Definition[struct{}] {
	d := aggregate.New("crm", "crm.Customer", func(string) struct{} { return struct{}{} })
	aggregate.Handle(d, func(struct{}, *classify) ([]any, error) { return nil, nil })
	aggregate.Apply(d, func(s struct{}, _ *E) struct{} { return s })
	aggregate.Apply(d, func(s struct{}, _ *noteAdded) struct{} { return s })
	aggregate.Publish(d, mapper)
	return d
}

func internalEnvelope(t *testing.T, reg *message.Registry, event any) message.Envelope {
	t.Helper()
	typ, payload, err := reg.Encode(event)
	if err != nil {
		t.Fatal(err)
	}
	return message.Envelope{ID: "evt-1", Kind: message.KindEvent, Type: typ, Source: "crm", Key: "c-1", Sequence: 7,
		CausationID: "cmd-1", OccurredAt: time.Unix(1700000000, 0).UTC(), Payload: payload}
}

func TestInternalChangeLeavesPublicEventUnchanged(t *testing.T) {
	regBefore, regAfter := message.NewRegistry(nil), message.NewRegistry(nil)
	message.MustRegister[classifiedBefore](regBefore, "crm.Classified.v1")
	message.MustRegister[classifiedAfter](regAfter, "crm.Classified.v2")
	for _, r := range []*message.Registry{regBefore, regAfter} {
		message.MustRegister[classificationUpdated](r, "crm.public.CustomerClassificationUpdated.v1")
	}
	before := customer(func(e *classifiedBefore) (*classificationUpdated, error) {
		return &classificationUpdated{Class: e.Class}, nil
	})
	after := customer(func(e *classifiedAfter) (*classificationUpdated, error) {
		return &classificationUpdated{Class: e.Class}, nil
	})

	evBefore := &classifiedBefore{Class: "B", Score: 72}
	evAfter := &classifiedAfter{Class: "B", Confidence: 0.72, Model: "rfm-2"}
	inBefore, inAfter := internalEnvelope(t, regBefore, evBefore), internalEnvelope(t, regAfter, evAfter)
	if bytes.Equal(inBefore.Payload, inAfter.Payload) {
		t.Fatal("the internal events should differ for this test to mean anything")
	}
	pubBefore, ok1, err1 := aggregate.PublicEnvelope(regBefore, before, "agg/crm.Customer/c-1", 3, inBefore, evBefore)
	pubAfter, ok2, err2 := aggregate.PublicEnvelope(regAfter, after, "agg/crm.Customer/c-1", 3, inAfter, evAfter)
	if err1 != nil || err2 != nil || !ok1 || !ok2 {
		t.Fatalf("map: %v %v %v %v", ok1, err1, ok2, err2)
	}
	bBefore, err := message.MarshalEnvelope(pubBefore, 0)
	if err != nil {
		t.Fatal(err)
	}
	bAfter, err := message.MarshalEnvelope(pubAfter, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bBefore, bAfter) {
		t.Fatalf("public event changed with the internal one:\nbefore %s\nafter  %s", bBefore, bAfter)
	}
	if string(pubBefore.Payload) != `{"class":"B"}` || pubBefore.Type != "crm.public.CustomerClassificationUpdated.v1" || pubBefore.Kind != message.KindEvent {
		t.Fatalf("public event %s %s %s", pubBefore.Kind, pubBefore.Type, pubBefore.Payload)
	}
	if pubBefore.Sequence != 7 || pubBefore.Key != "c-1" || pubBefore.ID != "evt-1" || pubBefore.CausationID != "cmd-1" ||
		pubBefore.Header(aggregate.HeaderStream) != "agg/crm.Customer/c-1" || pubBefore.Header(aggregate.HeaderCommit) != "3" {
		t.Fatalf("public envelope lost the stream position: %+v", pubBefore)
	}
}

func TestEventsWithoutMapperAreNotPublished(t *testing.T) {
	reg := message.NewRegistry(nil)
	message.MustRegister[classifiedBefore](reg, "crm.Classified.v1")
	message.MustRegister[noteAdded](reg, "crm.NoteAdded.v1")
	message.MustRegister[classificationUpdated](reg, "crm.public.CustomerClassificationUpdated.v1")
	skipC := customer(func(e *classifiedBefore) (*classificationUpdated, error) {
		if e.Class == "C" {
			return nil, nil // not for publication
		}
		return &classificationUpdated{Class: e.Class}, nil
	})
	note := &noteAdded{Text: "called twice"}
	if _, ok, err := aggregate.PublicEnvelope(reg, skipC, "s", 1, internalEnvelope(t, reg, note), note); ok || err != nil {
		t.Fatalf("event without a mapper: published %v, err %v; want neither", ok, err)
	}
	c := &classifiedBefore{Class: "C"}
	if _, ok, err := aggregate.PublicEnvelope(reg, skipC, "s", 1, internalEnvelope(t, reg, c), c); ok || err != nil {
		t.Fatalf("mapper returning nil: published %v, err %v; want neither", ok, err)
	}
	failing := customer(func(*classifiedBefore) (*classificationUpdated, error) { return nil, errors.New("no class") })
	b := &classifiedBefore{Class: "B"}
	if _, _, err := aggregate.PublicEnvelope(reg, failing, "s", 1, internalEnvelope(t, reg, b), b); err == nil || !strings.Contains(err.Error(), "no class") {
		t.Fatalf("failing mapper: %v, want its error", err)
	}
	if got := skipC.PublicEvents(); len(got) != 1 || got[0].Name() != "classificationUpdated" {
		t.Fatalf("PublicEvents %v", got)
	}
}

func TestPublishTwiceIsARegistrationError(t *testing.T) {
	d := customer(func(e *classifiedBefore) (*classificationUpdated, error) { return nil, nil })
	aggregate.Publish(d, func(e *classifiedBefore) (*classificationUpdated, error) { return nil, nil })
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "published twice") {
		t.Fatalf("validate: %v, want published twice", err)
	}
}
