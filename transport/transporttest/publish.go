package transporttest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// testRoundTrip: a command is delivered once, on the partition of its key,
// with every field as published, and changing the publisher's envelope
// after Publish changes nothing.
func (s *suite) testRoundTrip(t *testing.T) {
	ctx, tr := s.setup(t)
	q := s.declare(t, ctx, tr, "roundtrip")
	sent := command(q, s.name("key"))
	want := sent.Clone()
	mustPublish(t, ctx, tr, sent)
	sent.Headers["x-empty"] = "changed"
	sent.Payload[2] = 'X'

	r := acker()
	s.consume(t, ctx, tr, q, 4, r)
	got := s.waitFor(t, r, 1, "command")[0]
	requireEnvelope(t, "delivered command", got.Envelope(), want)
	if got.Attempt() != 1 {
		t.Errorf("Attempt() = %d on the first delivery, want 1", got.Attempt())
	}
	if p := transport.Partition(want.Key, s.f.Partitions); got.Partition() != p {
		t.Errorf("Partition() = %d, want transport.Partition(%q, %d) = %d", got.Partition(), want.Key, s.f.Partitions, p)
	}
	time.Sleep(s.f.QuietPeriod)
	if n := r.count(); n != 1 {
		t.Fatalf("the command was delivered %d times, want once", n)
	}
	r.requireNoSettleErrors(t)
}

// testReplyRouting: replies and commands go to the queue named by their
// Destination, and to no other.
func (s *suite) testReplyRouting(t *testing.T) {
	ctx, tr := s.setup(t)
	saga := s.declare(t, ctx, tr, "saga")
	svc := s.declare(t, ctx, tr, "svc")
	reply := envelope(message.KindReply, "transporttest.ThingDone.v1", saga, s.name("key"))
	cmd := command(svc, s.name("key"))
	mustPublish(t, ctx, tr, reply)
	mustPublish(t, ctx, tr, cmd)

	rSaga, rSvc := acker(), acker()
	s.consume(t, ctx, tr, saga, 4, rSaga)
	s.consume(t, ctx, tr, svc, 4, rSvc)
	requireEnvelope(t, "reply delivered to "+saga, s.waitFor(t, rSaga, 1, "reply")[0].Envelope(), reply)
	requireEnvelope(t, "command delivered to "+svc, s.waitFor(t, rSvc, 1, "command")[0].Envelope(), cmd)
	time.Sleep(s.f.QuietPeriod)
	if n := rSaga.count(); n != 1 {
		t.Errorf("queue %s got %d messages, want only the reply", saga, n)
	}
	if n := rSvc.count(); n != 1 {
		t.Errorf("queue %s got %d messages, want only the command", svc, n)
	}
}

// testEventFanOut: an event is copied to every queue bound to its type, and
// to no queue that is not.
func (s *suite) testEventFanOut(t *testing.T) {
	ctx, tr := s.setup(t)
	typ, other := s.eventType("Happened"), s.eventType("Other")
	boundA := s.declare(t, ctx, tr, "bound-a", typ)
	boundB := s.declare(t, ctx, tr, "bound-b", other, typ)
	otherQ := s.declare(t, ctx, tr, "other", other)
	plain := s.declare(t, ctx, tr, "plain")

	var sent []message.Envelope
	for range 3 {
		e := envelope(message.KindEvent, typ, "", s.name("key"))
		mustPublish(t, ctx, tr, e)
		sent = append(sent, e)
	}
	recs := map[string]*recorder{}
	for _, q := range []string{boundA, boundB, otherQ, plain} {
		recs[q] = acker()
		s.consume(t, ctx, tr, q, 8, recs[q])
	}
	for _, q := range []string{boundA, boundB} {
		got := s.waitFor(t, recs[q], len(sent), "events on bound queue "+q)
		byID := map[string]message.Envelope{}
		for _, d := range got {
			byID[d.Envelope().ID] = d.Envelope()
		}
		for _, e := range sent {
			g, ok := byID[e.ID]
			if !ok {
				t.Fatalf("bound queue %s did not get event %s", q, e.ID)
			}
			requireEnvelope(t, "event on "+q, g, e)
		}
	}
	time.Sleep(s.f.QuietPeriod)
	for _, q := range []string{boundA, boundB} {
		if n := recs[q].count(); n != len(sent) {
			t.Errorf("bound queue %s got %d deliveries, want %d", q, n, len(sent))
		}
	}
	for _, q := range []string{otherQ, plain} {
		if n := recs[q].count(); n != 0 {
			t.Errorf("queue %s, not bound to %s, got %d deliveries, want none", q, typ, n)
		}
	}
}

// testPublishRefusals: invalid envelopes fail with message.ErrInvalidEnvelope,
// commands and replies to an undeclared destination with
// transport.ErrUnroutable; an event nobody subscribes to is not an error.
func (s *suite) testPublishRefusals(t *testing.T) {
	ctx, tr := s.setup(t)
	q := s.declare(t, ctx, tr, "refusals")
	key := s.name("key")
	cases := []struct {
		name  string
		spoil func(e *message.Envelope)
		want  error
	}{
		{"missing id", func(e *message.Envelope) { e.ID = "" }, message.ErrInvalidEnvelope},
		{"unknown kind", func(e *message.Envelope) { e.Kind = "query" }, message.ErrInvalidEnvelope},
		{"unversioned type", func(e *message.Envelope) { e.Type = "transporttest.DoThing" }, message.ErrInvalidEnvelope},
		{"missing key", func(e *message.Envelope) { e.Key = "" }, message.ErrInvalidEnvelope},
		{"command without destination", func(e *message.Envelope) { e.Destination = "" }, message.ErrInvalidEnvelope},
		{"reply without destination", func(e *message.Envelope) { e.Kind, e.Destination = message.KindReply, "" }, message.ErrInvalidEnvelope},
		{"command to undeclared destination", func(e *message.Envelope) { e.Destination = s.name("undeclared") }, transport.ErrUnroutable},
		{"reply to undeclared destination", func(e *message.Envelope) { e.Kind, e.Destination = message.KindReply, s.name("undeclared") }, transport.ErrUnroutable},
		{"event nobody subscribes to", func(e *message.Envelope) {
			e.Kind, e.Type, e.Destination = message.KindEvent, s.eventType("Unheard"), ""
		}, nil},
	}
	for _, tc := range cases {
		e := command(q, key)
		tc.spoil(&e)
		err := tr.Publish(ctx, e)
		if tc.want == nil && err != nil {
			t.Errorf("%s: Publish = %v, want nil", tc.name, err)
		}
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: Publish = %v, want an error wrapping %q", tc.name, err, tc.want)
		}
	}
	// Nothing refused may reach the queue.
	r := acker()
	s.consume(t, ctx, tr, q, 8, r)
	time.Sleep(s.f.QuietPeriod)
	for _, d := range r.deliveries() {
		t.Errorf("a refused message was delivered: %+v", d.Envelope())
	}
}

// testMessageSize: a message of half the size limit is delivered; one
// larger than the limit fails with message.ErrPayloadTooLarge and is not
// delivered.
func (s *suite) testMessageSize(t *testing.T) {
	ctx, tr := s.setup(t)
	q := s.declare(t, ctx, tr, "size")
	key := s.name("key")
	big := command(q, key)
	big.Payload = json.RawMessage(`"` + strings.Repeat("b", s.f.MaxMessageSize+1) + `"`)
	if err := tr.Publish(ctx, big); !errors.Is(err, message.ErrPayloadTooLarge) {
		t.Fatalf("Publish of a %d-byte payload (limit %d) = %v, want an error wrapping %q", len(big.Payload), s.f.MaxMessageSize, err, message.ErrPayloadTooLarge)
	}
	half := command(q, key)
	half.Payload = json.RawMessage(`"` + strings.Repeat("h", s.f.MaxMessageSize/2) + `"`)
	mustPublish(t, ctx, tr, half)

	r := acker()
	s.consume(t, ctx, tr, q, 4, r)
	got := s.waitFor(t, r, 1, "half-limit message")
	requireEnvelope(t, "half-limit message", got[0].Envelope(), half)
	time.Sleep(s.f.QuietPeriod)
	if n := r.count(); n != 1 {
		t.Fatalf("queue got %d messages, want only the one within the limit", n)
	}
}
