package transporttest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/transport"
)

// testRetry: a message handed back with Retry comes again after the delay,
// behind the later messages of its key, with Attempt going on and the
// message unchanged.
func (s *suite) testRetry(t *testing.T) {
	ctx, tr := s.setup(t)
	q := s.declare(t, ctx, tr, "retry")
	key := s.name("key")
	m, next := command(q, key), command(q, key)
	mustPublish(t, ctx, tr, m)
	mustPublish(t, ctx, tr, next)

	var (
		mu      sync.Mutex
		retried time.Time
		back    time.Time
	)
	r := &recorder{settle: func(ctx context.Context, d transport.Delivery) error {
		if d.Envelope().ID != m.ID {
			return d.Ack(ctx)
		}
		mu.Lock()
		defer mu.Unlock()
		if d.Attempt() == 1 {
			e := d.Envelope()
			e.Headers["x-empty"] = "changed by the handler"
			retried = time.Now()
			return d.Retry(ctx, s.f.RetryDelay, errors.New("transporttest: later"))
		}
		back = time.Now()
		return d.Ack(ctx)
	}}
	s.consume(t, ctx, tr, q, 1, r)
	got := s.waitFor(t, r, 3, "delivery, the next message and the retried delivery")
	r.requireNoSettleErrors(t)
	type seen struct {
		id      string
		attempt int
	}
	want := []seen{{m.ID, 1}, {next.ID, 1}, {m.ID, 2}}
	for i, w := range want {
		if g := (seen{got[i].Envelope().ID, got[i].Attempt()}); g != w {
			t.Fatalf("delivery %d is %+v, want %+v (retried %s, next %s)", i, g, w, m.ID, next.ID)
		}
	}
	requireEnvelope(t, "retried message", got[2].Envelope(), m)
	mu.Lock()
	waited := back.Sub(retried)
	mu.Unlock()
	// A lower bound only, with slack for clocks and rounding: the retry
	// must have waited, whatever the machine's speed.
	if waited < s.f.RetryDelay/2 {
		t.Errorf("retried message came back after %v, want about the delay %v", waited, s.f.RetryDelay)
	}
	time.Sleep(s.f.QuietPeriod)
	if n := r.count(); n != 3 {
		t.Fatalf("%d deliveries, want 3", n)
	}
}

// testRetryLimit: Retry and Requeue count toward the same delivery limit,
// and the Retry of the last delivery dead-letters the message with the
// last reason.
func (s *suite) testRetryLimit(t *testing.T) {
	ctx, tr := s.setup(t)
	q := s.declare(t, ctx, tr, "retrylimit")
	m := command(q, s.name("key"))
	mustPublish(t, ctx, tr, m)
	limit := s.f.DeliveryLimit
	reason := func(attempt int) string { return fmt.Sprintf("transporttest: failure #%d of %s;", attempt, m.ID) }

	// Requeue, except on the second-to-last and the last delivery, which
	// are retried: the first Retry moves the message, the second must
	// dead-letter it.
	r := &recorder{settle: func(ctx context.Context, d transport.Delivery) error {
		a := d.Attempt()
		if a > limit+3 {
			return d.Ack(ctx) // past the limit: stop a broken transport's loop
		}
		if a >= limit-1 {
			return d.Retry(ctx, s.f.RetryDelay, errors.New(reason(a)))
		}
		return d.Requeue(ctx, errors.New(reason(a)))
	}}
	s.consume(t, ctx, tr, q, 1, r)
	dl := s.findDeadLetter(t, ctx, tr, m.ID)
	time.Sleep(s.f.QuietPeriod + s.f.RetryDelay)
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
