package transporttest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// testDeclareIdempotent: declaring a queue again, also while it holds
// messages, changes nothing: no message is lost and no event is copied
// twice.
func (s *suite) testDeclareIdempotent(t *testing.T) {
	ctx, tr := s.setup(t)
	typ := s.eventType("Declared")
	q := transport.Queue{Name: s.name("idem"), Events: []string{typ}}
	for range 2 {
		if err := tr.Declare(ctx, q); err != nil {
			t.Fatalf("Declare(%+v): %v", q, err)
		}
	}
	cmd := command(q.Name, s.name("key"))
	mustPublish(t, ctx, tr, cmd)
	if err := tr.Declare(ctx, q); err != nil {
		t.Fatalf("Declare(%+v) of a queue holding a message: %v", q, err)
	}
	evt := envelope(message.KindEvent, typ, "", s.name("key"))
	mustPublish(t, ctx, tr, evt)

	r := acker()
	s.consume(t, ctx, tr, q.Name, 4, r)
	s.waitFor(t, r, 2, "command and event")
	time.Sleep(s.f.QuietPeriod)
	got := map[string]int{}
	for _, d := range r.deliveries() {
		got[d.Envelope().ID]++
	}
	if got[cmd.ID] != 1 || got[evt.ID] != 1 || len(got) != 2 {
		t.Fatalf("deliveries by message ID = %v, want command %s and event %s once each", got, cmd.ID, evt.ID)
	}
}

// testClose: Close makes a running Consume return promptly; afterwards
// Publish fails with transport.ErrClosed and Consume returns promptly with
// it.
func (s *suite) testClose(t *testing.T) {
	ctx, tr := s.setup(t)
	q := s.declare(t, ctx, tr, "close")
	r := holder()
	mustPublish(t, ctx, tr, command(q, s.name("key")))
	running := make(chan error, 1)
	go func() { running <- tr.Consume(ctx, q, 1, r.handle) }()
	s.waitFor(t, r, 1, "delivery before Close")

	closed := make(chan error, 1)
	go func() { closed <- tr.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(s.f.RedeliveryTimeout):
		t.Fatalf("Close did not return within %v with a consumer holding an unsettled delivery", s.f.RedeliveryTimeout)
	}
	select {
	case err := <-running:
		if err != nil && !errors.Is(err, transport.ErrClosed) {
			t.Errorf("running Consume returned %v after Close, want nil or an error wrapping %q", err, transport.ErrClosed)
		}
	case <-time.After(s.f.RedeliveryTimeout):
		t.Fatalf("running Consume did not return within %v of Close", s.f.RedeliveryTimeout)
	}

	if err := tr.Publish(ctx, command(q, s.name("key"))); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Publish after Close = %v, want an error wrapping %q", err, transport.ErrClosed)
	}
	after := make(chan error, 1)
	go func() { after <- tr.Consume(ctx, q, 1, r.handle) }()
	select {
	case err := <-after:
		if !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Consume after Close = %v, want an error wrapping %q", err, transport.ErrClosed)
		}
	case <-time.After(s.f.RedeliveryTimeout):
		t.Fatalf("Consume after Close did not return within %v", s.f.RedeliveryTimeout)
	}
}

// testPersistent (only when Features.Persistent): what was queued and not
// acked when a transport closed is delivered through the next one
// newTransport returns, in publish order; what was acked is not.
func (s *suite) testPersistent(t *testing.T) {
	if !s.f.Persistent {
		t.Skip("Features.Persistent is false: queued messages do not outlive their transport")
	}
	ctx, first := s.setup(t)
	q := s.declare(t, ctx, first, "persistent")
	key := s.name("key")
	acked, held, queued := command(q, key), command(q, key), command(q, key)
	for _, e := range []message.Envelope{acked, held, queued} {
		mustPublish(t, ctx, first, e)
	}
	// Prefetch 1: acked is acked, held stays unsettled, queued is never
	// delivered.
	r := &recorder{settle: func(ctx context.Context, d transport.Delivery) error {
		if d.Envelope().ID == acked.ID {
			return d.Ack(ctx)
		}
		return nil
	}}
	s.consume(t, ctx, first, q, 1, r)
	got := s.waitFor(t, r, 2, "first transport's deliveries")
	r.requireNoSettleErrors(t)
	if got[0].Envelope().ID != acked.ID || got[1].Envelope().ID != held.ID {
		t.Fatalf("first transport delivered %s, %s; want %s, %s", got[0].Envelope().ID, got[1].Envelope().ID, acked.ID, held.ID)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	_, second := s.setup(t)
	if err := second.Declare(ctx, transport.Queue{Name: q}); err != nil {
		t.Fatalf("Declare(%s) on the second transport: %v", q, err)
	}
	r2 := acker()
	s.consume(t, ctx, second, q, 4, r2)
	got = s.waitFor(t, r2, 2, "second transport's deliveries")
	requireEnvelope(t, "unacked message after the first transport closed", got[0].Envelope(), held)
	requireEnvelope(t, "undelivered message after the first transport closed", got[1].Envelope(), queued)
	time.Sleep(s.f.QuietPeriod)
	r2.requireNoSettleErrors(t)
	if n := r2.count(); n != 2 {
		t.Fatalf("second transport delivered %d messages, want 2 (the acked one must not come back)", n)
	}
}
