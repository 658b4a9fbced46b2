package engine_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/workflows"
)

// outageStore fails every append to the streams under prefix while down
// is set, as a store that is unreachable for them would.
type outageStore struct {
	store.Store
	prefix string
	down   atomic.Bool
	failed atomic.Int64
}

func (s *outageStore) Append(ctx context.Context, c store.Commit) error {
	if s.down.Load() && strings.HasPrefix(c.Stream, s.prefix) {
		s.failed.Add(1)
		return errors.New("test: store unreachable")
	}
	return s.Store.Append(ctx, c)
}

// retryRecorder is a transport that records the delays of its deliveries'
// Retry calls and counts their Requeue calls.
type retryRecorder struct {
	transport.Transport
	mu       sync.Mutex
	delays   []time.Duration
	requeues int
}

func (r *retryRecorder) Consume(ctx context.Context, queue string, prefetch int, h transport.Handler) error {
	return r.Transport.Consume(ctx, queue, prefetch, func(ctx context.Context, d transport.Delivery) {
		h(ctx, &recordedDelivery{Delivery: d, r: r})
	})
}

func (r *retryRecorder) seen() ([]time.Duration, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.delays), r.requeues
}

type recordedDelivery struct {
	transport.Delivery
	r *retryRecorder
}

func (d *recordedDelivery) Retry(ctx context.Context, delay time.Duration, reason error) error {
	d.r.mu.Lock()
	d.r.delays = append(d.r.delays, delay)
	d.r.mu.Unlock()
	return d.Delivery.Retry(ctx, delay, reason)
}

func (d *recordedDelivery) Requeue(ctx context.Context, reason error) error {
	d.r.mu.Lock()
	d.r.requeues++
	d.r.mu.Unlock()
	return d.Delivery.Requeue(ctx, reason)
}

// TestStoreOutageIsRetriedLaterNotDeadLettered: a command whose commit
// keeps failing is retried in place, then handed back to the transport for
// delayed retries with a growing delay, instead of burning its delivery
// limit at once; when the store is back it is handled and the saga
// completes, with nothing dead-lettered.
func TestStoreOutageIsRetriedLaterNotDeadLettered(t *testing.T) {
	st, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	flaky := &outageStore{Store: st, prefix: "agg/payments.Payment/"}
	flaky.down.Store(true)
	tr := inmem.New(inmem.WithDeliveryLimit(6), inmem.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = tr.Close() })
	rec := &retryRecorder{Transport: tr}
	e := newOrdersEngine(t, engine.Options{Store: flaky, Transport: rec, RetryDelay: 100 * time.Millisecond, MaxRetryDelay: 400 * time.Millisecond})

	id := startOrder(t, e, orders.Input{OrderID: "o-outage", SKU: "book", Qty: 1, Amount: 20, Address: "1 Main St"})
	// The command is handed back for delayed retries, with a growing
	// delay, and never requeued at once.
	deadline := time.Now().Add(20 * time.Second)
	for {
		delays, requeues := rec.seen()
		if requeues != 0 {
			t.Fatalf("%d requeues during the outage, want delayed retries only", requeues)
		}
		if len(delays) >= 3 {
			want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
			if !slices.Equal(delays[:3], want) {
				t.Fatalf("retry delays %v, want %v first", delays, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d delayed retries within 20s (%d failed appends), want 3", len(delays), flaky.failed.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if dls, _ := tr.DeadLetters(context.Background(), 10); len(dls) != 0 {
		t.Fatalf("dead letters during the outage: %+v", dls)
	}
	flaky.down.Store(false)

	s := waitSaga(t, e, id)
	if s.Status != workflows.StatusCompleted {
		t.Fatalf("status = %s (%s), want completed", s.Status, s.Error)
	}
	if dls, _ := tr.DeadLetters(context.Background(), 10); len(dls) != 0 {
		t.Fatalf("dead letters after the outage: %+v", dls)
	}
	checkEffects(t, st, "o-outage", completedEffects)
}
