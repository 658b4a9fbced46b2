package participant_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/participant"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
)

// TestGracefulStopFinishesTheCommandInProgress: when Run's context ends
// while a handler runs, the handler's context stays live, its reply is
// recorded and sent, the delivery is acked (not requeued), and only then
// does Run return.
func TestGracefulStopFinishesTheCommandInProgress(t *testing.T) {
	tr := inmem.New(inmem.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = tr.Close() })
	ctx := t.Context()
	for _, q := range []string{"sagas", orders.PaymentService} {
		if err := tr.Declare(ctx, transport.Queue{Name: q}); err != nil {
			t.Fatal(err)
		}
	}
	replies := make(chan message.Envelope, 4)
	go func() {
		_ = tr.Consume(ctx, "sagas", 4, func(ctx context.Context, d transport.Delivery) {
			_ = d.Ack(ctx)
			replies <- d.Envelope()
		})
	}()

	var calls atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	dedupe := participant.NewMemoryDeduper()
	rec := &settleRecorder{Transport: tr}
	serve := func() (*participant.Participant, context.CancelFunc, chan error) {
		p := participant.New(rec, ordersRegistry(t), orders.PaymentService, participant.WithDeduper(dedupe), participant.WithLogger(quietLogger()))
		participant.Handle(p, func(hctx context.Context, c *orders.ChargePayment, _ participant.Meta) (*orders.PaymentCharged, error) {
			if calls.Add(1) == 1 {
				close(started)
				<-release
			}
			if err := hctx.Err(); err != nil {
				return nil, err
			}
			return &orders.PaymentCharged{OrderID: c.OrderID, ChargeID: "ch-1"}, nil
		})
		rctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(rctx) }()
		return p, cancel, done
	}
	_, stop, done := serve()

	cmd, err := ordersRegistry(t).New(message.KindCommand, "o-1", &orders.ChargePayment{OrderID: "o-1", Amount: 5})
	if err != nil {
		t.Fatal(err)
	}
	cmd.Destination, cmd.SagaID = orders.PaymentService, "saga-1"
	cmd.SetHeader(message.HeaderReplyTo, "sagas")
	if err := tr.Publish(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	<-started
	stop()
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while its handler was running", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of its handler finishing")
	}
	select {
	case r := <-replies:
		if r.Type != "payments.PaymentCharged.v1" || r.CausationID != cmd.ID {
			t.Fatalf("reply %s to %s, want PaymentCharged to %s", r.Type, r.CausationID, cmd.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reply within 10s")
	}

	if acks, others := rec.counts(); acks != 1 || others != 0 {
		t.Fatalf("the stopped delivery was acked %d times and otherwise settled %d times, want one ack", acks, others)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler called %d times, want once", n)
	}
}

// settleRecorder counts how the deliveries it hands out are settled.
type settleRecorder struct {
	transport.Transport
	mu           sync.Mutex
	acks, others int
}

func (r *settleRecorder) Consume(ctx context.Context, queue string, prefetch int, h transport.Handler) error {
	return r.Transport.Consume(ctx, queue, prefetch, func(ctx context.Context, d transport.Delivery) {
		h(ctx, &recordedDelivery{Delivery: d, r: r})
	})
}

func (r *settleRecorder) counts() (acks, others int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.acks, r.others
}

func (r *settleRecorder) add(ack bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ack {
		r.acks++
	} else {
		r.others++
	}
}

type recordedDelivery struct {
	transport.Delivery
	r *settleRecorder
}

func (d *recordedDelivery) Ack(ctx context.Context) error { d.r.add(true); return d.Delivery.Ack(ctx) }
func (d *recordedDelivery) Requeue(ctx context.Context, reason error) error {
	d.r.add(false)
	return d.Delivery.Requeue(ctx, reason)
}
func (d *recordedDelivery) Retry(ctx context.Context, delay time.Duration, reason error) error {
	d.r.add(false)
	return d.Delivery.Retry(ctx, delay, reason)
}
func (d *recordedDelivery) DeadLetter(ctx context.Context, reason error) error {
	d.r.add(false)
	return d.Delivery.DeadLetter(ctx, reason)
}
