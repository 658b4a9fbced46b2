package transporttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// occurred is a time with nanoseconds and a non-UTC zone, so that a
// transport that drops milliseconds is caught.
var occurred = time.Date(2031, time.March, 4, 5, 6, 7, 891234567, time.FixedZone("UTC+2", 2*60*60))

// envelope returns a message with every field set. Commands and replies go
// to dest; events (dest "") are routed by typ.
func envelope(kind message.Kind, typ, dest, key string) message.Envelope {
	id := message.NewID()
	return message.Envelope{
		ID:            id,
		Kind:          kind,
		Type:          typ,
		Source:        "transporttest",
		Destination:   dest,
		Key:           key,
		SagaID:        "saga-" + key,
		CorrelationID: "corr-" + key,
		CausationID:   "cause-" + id,
		Sequence:      7,
		OccurredAt:    occurred,
		Headers: map[string]string{
			message.HeaderTraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			message.HeaderTraceState:  "vendor=ü",
			"x-empty":                 "",
		},
		// Compact JSON with non-ASCII text and the characters HTML
		// escaping would rewrite: it must come back byte for byte.
		Payload: json.RawMessage(`{"id":"` + id + `","note":"grüße <b> & ✓","n":42,"list":[1,null,true]}`),
	}
}

// command returns a command of a fixed type to dest.
func command(dest, key string) message.Envelope {
	return envelope(message.KindCommand, "transporttest.DoThing.v1", dest, key)
}

// diffEnvelope names every field of got that differs from want; times are
// compared to the millisecond.
func diffEnvelope(got, want message.Envelope) []string {
	var d []string
	add := func(field string, g, w any) {
		d = append(d, fmt.Sprintf("%s: got %q, want %q", field, fmt.Sprint(g), fmt.Sprint(w)))
	}
	cmp := func(field, g, w string) {
		if g != w {
			add(field, g, w)
		}
	}
	cmp("ID", got.ID, want.ID)
	cmp("Kind", string(got.Kind), string(want.Kind))
	cmp("Type", got.Type, want.Type)
	cmp("Source", got.Source, want.Source)
	cmp("Destination", got.Destination, want.Destination)
	cmp("Key", got.Key, want.Key)
	cmp("SagaID", got.SagaID, want.SagaID)
	cmp("CorrelationID", got.CorrelationID, want.CorrelationID)
	cmp("CausationID", got.CausationID, want.CausationID)
	if got.Sequence != want.Sequence {
		add("Sequence", got.Sequence, want.Sequence)
	}
	if !got.OccurredAt.Truncate(time.Millisecond).Equal(want.OccurredAt.Truncate(time.Millisecond)) {
		add("OccurredAt", got.OccurredAt.Format(time.RFC3339Nano), want.OccurredAt.Format(time.RFC3339Nano))
	}
	if !maps.Equal(got.Headers, want.Headers) {
		add("Headers", got.Headers, want.Headers)
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		add("Payload", string(got.Payload), string(want.Payload))
	}
	return d
}

// requireEnvelope fails the test when got differs from want.
func requireEnvelope(t *testing.T, what string, got, want message.Envelope) {
	t.Helper()
	if d := diffEnvelope(got, want); len(d) > 0 {
		t.Fatalf("%s differs from what was published:\n  %s", what, strings.Join(d, "\n  "))
	}
}

// recorder is a handler that records every delivery and settles it with
// its settle function (nil: leaves it unsettled).
type recorder struct {
	settle func(ctx context.Context, d transport.Delivery) error
	mu     sync.Mutex
	got    []transport.Delivery
	errs   []error
}

// acker returns a recorder that acks every delivery.
func acker() *recorder {
	return &recorder{settle: func(ctx context.Context, d transport.Delivery) error { return d.Ack(ctx) }}
}

// holder returns a recorder that never settles.
func holder() *recorder { return &recorder{} }

func (r *recorder) handle(ctx context.Context, d transport.Delivery) {
	r.mu.Lock()
	r.got = append(r.got, d)
	r.mu.Unlock()
	if r.settle == nil {
		return
	}
	if err := r.settle(ctx, d); err != nil {
		r.mu.Lock()
		r.errs = append(r.errs, fmt.Errorf("settle %s (attempt %d): %w", d.Envelope().ID, d.Attempt(), err))
		r.mu.Unlock()
	}
}

// deliveries returns what was delivered so far, in delivery order.
func (r *recorder) deliveries() []transport.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]transport.Delivery(nil), r.got...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// requireNoSettleErrors fails the test if settling any delivery failed.
func (r *recorder) requireNoSettleErrors(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := errors.Join(r.errs...); err != nil {
		t.Fatalf("settling failed: %v", err)
	}
}

// waitFor waits up to RedeliveryTimeout until r has at least n deliveries
// and returns them.
func (s *suite) waitFor(t *testing.T, r *recorder, n int, what string) []transport.Delivery {
	t.Helper()
	if !within(s.f.RedeliveryTimeout, func() bool { return r.count() >= n }) {
		t.Fatalf("%s: %d deliveries after %v, want %d", what, r.count(), s.f.RedeliveryTimeout, n)
	}
	return r.deliveries()
}

// mustSettle fails the test when settling a delivery failed.
func mustSettle(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// consumer is one running Consume call.
type consumer struct {
	queue  string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// consume runs tr.Consume(queue, prefetch, r.handle) in a goroutine until
// stop or the end of the test.
func (s *suite) consume(t *testing.T, ctx context.Context, tr transport.Transport, queue string, prefetch int, r *recorder) *consumer {
	t.Helper()
	cctx, cancel := context.WithCancel(ctx)
	c := &consumer{queue: queue, cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- tr.Consume(cctx, queue, prefetch, r.handle) }()
	t.Cleanup(func() {
		if err := c.stop(s.f.RedeliveryTimeout); err != nil && !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Consume(%s): %v", queue, err)
		}
	})
	return c
}

// stop cancels the consumer's context and waits up to d for Consume to
// return; it returns Consume's result.
func (c *consumer) stop(d time.Duration) error {
	c.once.Do(func() {
		c.cancel()
		select {
		case c.err = <-c.done:
		case <-time.After(d):
			c.err = fmt.Errorf("Consume(%s) did not return within %v of its context being cancelled", c.queue, d)
		}
	})
	return c.err
}

// findDeadLetter polls DeadLetters until the one of message id appears.
func (s *suite) findDeadLetter(t *testing.T, ctx context.Context, tr transport.Transport, id string) transport.DeadLetter {
	t.Helper()
	var found *transport.DeadLetter
	var lastErr error
	within(s.f.RedeliveryTimeout, func() bool {
		dls, err := tr.DeadLetters(ctx, deadLetterScan)
		if err != nil {
			lastErr = err
			return false
		}
		for i := range dls {
			if dls[i].Message.ID == id {
				found = &dls[i]
				return true
			}
		}
		return false
	})
	if found == nil {
		t.Fatalf("message %s is not among the dead letters after %v (last DeadLetters error: %v)", id, s.f.RedeliveryTimeout, lastErr)
	}
	return *found
}
