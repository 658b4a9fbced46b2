package transporttest

import (
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
