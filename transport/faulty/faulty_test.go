package faulty_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/faulty"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/transport/transporttest"
)

func newInmem(t *testing.T) *inmem.Transport {
	t.Helper()
	tr := inmem.New(inmem.WithPartitions(4), inmem.WithDeliveryLimit(4),
		inmem.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// Without faults the wrapper is the transport it wraps: it passes the
// conformance suite.
func TestConformanceWithoutFaults(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transport.Transport {
		return faulty.Wrap(newInmem(t))
	}, transporttest.Features{Partitions: 4, DeliveryLimit: 4, RedeliveryTimeout: 5 * time.Second,
		QuietPeriod: 50 * time.Millisecond, RetryDelay: 100 * time.Millisecond})
}

// seen is what a test consumer saw: each delivery's message ID and attempt.
type seen struct {
	mu  sync.Mutex
	got []string
	ch  chan transport.Delivery
}

func consume(t *testing.T, tr transport.Transport) *seen {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &seen{ch: make(chan transport.Delivery, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tr.Consume(ctx, "q", 8, func(_ context.Context, d transport.Delivery) { s.ch <- d })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func (s *seen) next(t *testing.T) transport.Delivery {
	t.Helper()
	select {
	case d := <-s.ch:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery within 5s")
		return nil
	}
}

func (s *seen) none(t *testing.T) {
	t.Helper()
	select {
	case d := <-s.ch:
		t.Fatalf("unexpected delivery of %s (attempt %d)", d.Envelope().ID, d.Attempt())
	case <-time.After(100 * time.Millisecond):
	}
}

func publish(t *testing.T, tr transport.Transport) message.Envelope {
	t.Helper()
	ctx := context.Background()
	if err := tr.Declare(ctx, transport.Queue{Name: "q"}); err != nil {
		t.Fatal(err)
	}
	e := message.Envelope{ID: message.NewID(), Kind: message.KindCommand, Type: "t.T.v1", Destination: "q",
		Key: "k", OccurredAt: time.Now(), Payload: json.RawMessage(`{}`)}
	if err := tr.Publish(ctx, e); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestDuplicateSettlesOnceWhenBothCopiesAreSettled(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name        string
		settle      func(a, b transport.Delivery) error
		redelivered bool
		deadLetter  bool
	}{
		{"both acked: acked", func(a, b transport.Delivery) error {
			return errors.Join(a.Ack(ctx), b.Ack(ctx))
		}, false, false},
		{"one requeued: requeued", func(a, b transport.Delivery) error {
			return errors.Join(a.Ack(ctx), b.Requeue(ctx, errors.New("boom")))
		}, true, false},
		{"first dead-lettered, second acked: dead-lettered", func(a, b transport.Delivery) error {
			return errors.Join(a.DeadLetter(ctx, errors.New("bad")), b.Ack(ctx))
		}, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inner := newInmem(t)
			tr := faulty.Wrap(inner, faulty.Duplicate())
			e := publish(t, tr)
			s := consume(t, tr)
			a, b := s.next(t), s.next(t)
			if a.Envelope().ID != e.ID || b.Envelope().ID != e.ID {
				t.Fatalf("copies %s and %s, want both %s", a.Envelope().ID, b.Envelope().ID, e.ID)
			}
			if err := c.settle(a, b); err != nil {
				t.Fatalf("settle: %v", err)
			}
			if err := a.Ack(ctx); !errors.Is(err, transport.ErrAlreadySettled) {
				t.Errorf("second settle of a copy = %v, want ErrAlreadySettled", err)
			}
			if c.redelivered {
				if d := s.next(t); d.Attempt() != 2 {
					t.Errorf("redelivery attempt %d, want 2", d.Attempt())
				}
				_ = s.next(t) // its duplicate
			} else {
				s.none(t)
			}
			dls, err := inner.DeadLetters(ctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(dls) == 1; got != c.deadLetter {
				t.Errorf("dead letters %+v, want dead-lettered %v", dls, c.deadLetter)
			}
			if st := tr.Stats(); st.Duplicates < 1 {
				t.Errorf("stats %+v, want duplicates counted", st)
			}
		})
	}
}

func TestDropAcksRedeliversTheMessage(t *testing.T) {
	tr := faulty.Wrap(newInmem(t), faulty.DropAcks(1))
	publish(t, tr)
	s := consume(t, tr)
	d := s.next(t)
	if err := d.Ack(context.Background()); err != nil {
		t.Fatalf("ack: %v", err)
	}
	if again := s.next(t); again.Attempt() != 2 || again.Envelope().ID != d.Envelope().ID {
		t.Fatalf("after a dropped ack got %s attempt %d, want %s attempt 2", again.Envelope().ID, again.Attempt(), d.Envelope().ID)
	}
	if st := tr.Stats(); st.DroppedAcks != 1 {
		t.Errorf("stats %+v, want 1 dropped ack", st)
	}
}

func TestReorderSwapsNeighboursAndReleasesALoneMessage(t *testing.T) {
	ctx := context.Background()
	tr := faulty.Wrap(newInmem(t), faulty.Reorder(300*time.Millisecond))
	first := publish(t, tr)
	second := publish(t, tr)
	s := consume(t, tr)
	a, b := s.next(t), s.next(t)
	if a.Envelope().ID != second.ID || b.Envelope().ID != first.ID {
		t.Fatalf("got %s then %s, want %s (the second) then %s", a.Envelope().ID, b.Envelope().ID, second.ID, first.ID)
	}
	for _, d := range []transport.Delivery{a, b} {
		if err := d.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	lone := publish(t, tr)
	start := time.Now()
	if d := s.next(t); d.Envelope().ID != lone.ID {
		t.Fatalf("got %s, want the lone message %s", d.Envelope().ID, lone.ID)
	} else if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Errorf("lone message handed on after %v, want it held about 300ms", waited)
	}
	if st := tr.Stats(); st.Reordered != 1 {
		t.Errorf("stats %+v, want 1 reordered", st)
	}
}
