package transporttest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/transport"
)

// testAck: an acked message is not delivered again, not even to the next
// consumer of the queue.
func (s *suite) testAck(t *testing.T) {
	ctx, tr := s.setup(t)
	q := s.declare(t, ctx, tr, "ack")
	key := s.name("key")
	first := command(q, key)
	mustPublish(t, ctx, tr, first)

	rA := acker()
	a := s.consume(t, ctx, tr, q, 1, rA)
	s.waitFor(t, rA, 1, "first consumer")
	rA.requireNoSettleErrors(t)
	if err := a.stop(s.f.RedeliveryTimeout); err != nil {
		t.Fatalf("Consume after its context was cancelled = %v, want nil", err)
	}

	// A marker on the same key comes after anything left of the first
	// message, on the same partition.
	marker := command(q, key)
	mustPublish(t, ctx, tr, marker)
	rB := acker()
	s.consume(t, ctx, tr, q, 1, rB)
	if !within(s.f.RedeliveryTimeout, func() bool {
		for _, d := range rB.deliveries() {
			if d.Envelope().ID == marker.ID {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("marker %s not delivered within %v; deliveries before it: %d (the acked message is %s)", marker.ID, s.f.RedeliveryTimeout, rB.count(), first.ID)
	}
	time.Sleep(s.f.QuietPeriod)
	for _, d := range rB.deliveries() {
		if d.Envelope().ID == first.ID {
			t.Fatalf("acked message %s was delivered again (attempt %d)", first.ID, d.Attempt())
		}
	}
	if got := rB.deliveries(); len(got) != 1 || got[0].Envelope().ID != marker.ID {
		t.Fatalf("second consumer got %d deliveries, want exactly the marker %s", len(got), marker.ID)
	}
	if n := rA.count(); n != 1 {
		t.Fatalf("first consumer got %d deliveries, want 1", n)
	}
}

// settleOp is one way to settle a delivery.
type settleOp struct {
	name string
	do   func(ctx context.Context, d transport.Delivery) error
}

var (
	opAck     = settleOp{"Ack", func(ctx context.Context, d transport.Delivery) error { return d.Ack(ctx) }}
	opRequeue = settleOp{"Requeue", func(ctx context.Context, d transport.Delivery) error {
		return d.Requeue(ctx, errors.New("transporttest: requeued"))
	}}
	opDeadLetter = settleOp{"DeadLetter", func(ctx context.Context, d transport.Delivery) error {
		return d.DeadLetter(ctx, errors.New("transporttest: dead-lettered"))
	}}
)

// testSettleTwice: every second settlement of a delivery fails with
// transport.ErrAlreadySettled.
func (s *suite) testSettleTwice(t *testing.T) {
	ctx, tr := s.setup(t)
	q := s.declare(t, ctx, tr, "twice")
	cases := [][2]settleOp{
		{opAck, opAck}, {opAck, opRequeue}, {opAck, opDeadLetter},
		{opRequeue, opAck}, {opRequeue, opRequeue},
		{opDeadLetter, opAck}, {opDeadLetter, opDeadLetter},
	}
	ids := make([]string, len(cases))
	for i := range cases {
		e := command(q, s.name("key"))
		ids[i] = e.ID
		mustPublish(t, ctx, tr, e)
	}
	r := holder()
	s.consume(t, ctx, tr, q, len(cases), r)
	s.waitFor(t, r, len(cases), "messages to settle")
	first := map[string]transport.Delivery{}
	for _, d := range r.deliveries() {
		if _, ok := first[d.Envelope().ID]; !ok {
			first[d.Envelope().ID] = d
		}
	}
	for i, c := range cases {
		d, ok := first[ids[i]]
		if !ok {
			t.Fatalf("message %s was not delivered", ids[i])
		}
		if err := c[0].do(ctx, d); err != nil {
			t.Fatalf("%s: %v", c[0].name, err)
		}
		if err := c[1].do(ctx, d); !errors.Is(err, transport.ErrAlreadySettled) {
			t.Errorf("%s after %s = %v, want an error wrapping %q", c[1].name, c[0].name, err, transport.ErrAlreadySettled)
		}
	}
}

// testRequeue: a requeued message is delivered again, before the later
// messages of its key, with Attempt incremented, and unchanged even though
// the handler changed the headers and payload of the envelope it got.
func (s *suite) testRequeue(t *testing.T) {
	ctx, tr := s.setup(t)
	q := s.declare(t, ctx, tr, "requeue")
	key := s.name("key")
	m, next := command(q, key), command(q, key)
	mustPublish(t, ctx, tr, m)
	mustPublish(t, ctx, tr, next)

	r := &recorder{settle: func(ctx context.Context, d transport.Delivery) error {
		if d.Envelope().ID == m.ID && d.Attempt() == 1 {
			// What a handler does to its copy must not reach the redelivery.
			e := d.Envelope()
			e.Headers["x-empty"] = "changed by the handler"
			e.Payload[2] = 'X'
			return d.Requeue(ctx, errors.New("transporttest: try again"))
		}
		return d.Ack(ctx)
	}}
	s.consume(t, ctx, tr, q, 1, r)
	got := s.waitFor(t, r, 3, "delivery, redelivery and the next message")
	r.requireNoSettleErrors(t)
	type seen struct {
		id      string
		attempt int
	}
	want := []seen{{m.ID, 1}, {m.ID, 2}, {next.ID, 1}}
	for i, w := range want {
		if g := (seen{got[i].Envelope().ID, got[i].Attempt()}); g != w {
			t.Fatalf("delivery %d is %+v, want %+v (requeued %s, next %s)", i, g, w, m.ID, next.ID)
		}
	}
	requireEnvelope(t, "redelivered message", got[1].Envelope(), m)
	time.Sleep(s.f.QuietPeriod)
	if n := r.count(); n != 3 {
		t.Fatalf("%d deliveries, want 3", n)
	}
}

// testDeadLetter: a dead-lettered message is listed in DeadLetters with its
// queue, reason and attempts, and is not delivered again.
func (s *suite) testDeadLetter(t *testing.T) {
	ctx, tr := s.setup(t)
	q := s.declare(t, ctx, tr, "dead")
	key := s.name("key")
	m := command(q, key)
	reason := fmt.Sprintf("transporttest: cannot handle %s", m.ID)
	mustPublish(t, ctx, tr, m)
	before := time.Now()

	r := &recorder{settle: func(ctx context.Context, d transport.Delivery) error {
		if d.Envelope().ID == m.ID {
			return d.DeadLetter(ctx, errors.New(reason))
		}
		return d.Ack(ctx)
	}}
	s.consume(t, ctx, tr, q, 1, r)
	s.waitFor(t, r, 1, "message to dead-letter")
	dl := s.findDeadLetter(t, ctx, tr, m.ID)
	r.requireNoSettleErrors(t)
	if !strings.Contains(dl.Reason, reason) {
		t.Errorf("dead letter Reason = %q, want it to contain %q", dl.Reason, reason)
	}
	if dl.Queue != q {
		t.Errorf("dead letter Queue = %q, want %q", dl.Queue, q)
	}
	if dl.Attempts != 1 {
		t.Errorf("dead letter Attempts = %d, want 1", dl.Attempts)
	}
	if dl.At.Before(before.Add(-time.Minute)) || dl.At.After(time.Now().Add(time.Minute)) {
		t.Errorf("dead letter At = %s, want about %s", dl.At, before)
	}
	requireEnvelope(t, "dead letter's message", dl.Message, m)

	marker := command(q, key)
	mustPublish(t, ctx, tr, marker)
	s.waitFor(t, r, 2, "marker after the dead letter")
	time.Sleep(s.f.QuietPeriod)
	got := r.deliveries()
	if len(got) != 2 || got[1].Envelope().ID != marker.ID {
		t.Fatalf("got %d deliveries, want the dead-lettered message once and then the marker", len(got))
	}
}

// testDeliveryLimit: a message requeued on every delivery is delivered
// DeliveryLimit times, then dead-lettered with the last reason.
func (s *suite) testDeliveryLimit(t *testing.T) {
	ctx, tr := s.setup(t)
	q := s.declare(t, ctx, tr, "limit")
	m := command(q, s.name("key"))
	mustPublish(t, ctx, tr, m)
	limit := s.f.DeliveryLimit
	reason := func(attempt int) string { return fmt.Sprintf("transporttest: failure #%d of %s;", attempt, m.ID) }

	r := &recorder{settle: func(ctx context.Context, d transport.Delivery) error {
		if d.Attempt() > limit+3 {
			// Past the limit: stop the loop of a broken transport.
			return d.Ack(ctx)
		}
		return d.Requeue(ctx, errors.New(reason(d.Attempt())))
	}}
	s.consume(t, ctx, tr, q, 1, r)
	dl := s.findDeadLetter(t, ctx, tr, m.ID)
	time.Sleep(s.f.QuietPeriod)
	r.requireNoSettleErrors(t)
	if n := r.count(); n != limit {
		t.Errorf("message was delivered %d times, want DeliveryLimit = %d", n, limit)
	}
	for i, d := range r.deliveries() {
		if d.Attempt() != i+1 {
			t.Errorf("delivery %d has Attempt %d, want %d", i+1, d.Attempt(), i+1)
		}
	}
	if dl.Attempts != limit {
		t.Errorf("dead letter Attempts = %d, want %d", dl.Attempts, limit)
	}
	if !strings.Contains(dl.Reason, reason(limit)) {
		t.Errorf("dead letter Reason = %q, want it to contain the last reason %q", dl.Reason, reason(limit))
	}
	if dl.Queue != q {
		t.Errorf("dead letter Queue = %q, want %q", dl.Queue, q)
	}
	requireEnvelope(t, "dead letter's message", dl.Message, m)
}
