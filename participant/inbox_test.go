package participant_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/participant"
	"github.com/sagaflow/sagaflow/store/embedded"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
)

// TestInboxKeepsAcceptedCommandsAcrossAStop: with a Deduper that has an
// inbox, a delivery is acked once its command is accepted and the handler
// runs after. Two commands of one key arrive; the first one's handler is
// held, so both are accepted and acked while the second waits behind it.
// The participant is stopped then: the call in progress finishes, the
// second command stays in the inbox (on the embedded store), and the next
// Run on the same store runs it, once. Nothing accepted is lost, nothing
// is run twice, and no delivery waits for a handler.
func TestInboxKeepsAcceptedCommandsAcrossAStop(t *testing.T) {
	ctx := t.Context()
	tr := inmem.New(inmem.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = tr.Close() })
	if err := tr.Declare(ctx, transport.Queue{Name: orders.PaymentService}); err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	dedupe := participant.NewStoreDeduper(st)

	var (
		mu    sync.Mutex
		calls = map[string]int{}
	)
	count := func(order string) int { mu.Lock(); defer mu.Unlock(); return calls[order] }
	started, release := make(chan struct{}), make(chan struct{})
	serve := func() (context.CancelFunc, chan error) {
		p := participant.New(tr, ordersRegistry(t), orders.PaymentService, participant.WithDeduper(dedupe), participant.WithLogger(quietLogger()))
		participant.Handle(p, func(_ context.Context, c *orders.ChargePayment, _ participant.Meta) (*orders.PaymentCharged, error) {
			mu.Lock()
			calls[c.OrderID]++
			first := c.OrderID == "o-1" && calls[c.OrderID] == 1
			mu.Unlock()
			if first {
				close(started)
				<-release
			}
			return &orders.PaymentCharged{OrderID: c.OrderID, ChargeID: "ch-" + c.OrderID}, nil
		})
		rctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(rctx) }()
		return cancel, done
	}
	stop, done := serve()
	var ids []string
	for _, order := range []string{"o-1", "o-2"} {
		env := message.Envelope{ID: message.NewID(), Kind: message.KindCommand, Type: "payments.ChargePayment.v1",
			Destination: orders.PaymentService, Key: "k", Payload: []byte(`{"order_id":"` + order + `","amount":10}`)}
		if err := tr.Publish(ctx, env); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, env.ID)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the first handler was not called within 10s")
	}
	pendingIDs := func() []string {
		pending, err := dedupe.Pending(ctx, orders.PaymentService)
		if err != nil {
			t.Fatalf("pending: %v", err)
		}
		var out []string
		for _, e := range pending {
			out = append(out, e.ID)
		}
		slices.Sort(out)
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(pendingIDs()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("inbox holds %v, want both commands accepted while the first handler runs", pendingIDs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return within 15s of the stop")
	}
	if got := pendingIDs(); !slices.Equal(got, ids[1:]) {
		t.Fatalf("inbox after the stop holds %v, want only the second command %v", got, ids[1:])
	}
	if n := count("o-2"); n != 0 {
		t.Fatalf("second command handled %d times before the restart, want 0", n)
	}

	stop, done = serve()
	t.Cleanup(func() { stop(); <-done })
	deadline = time.Now().Add(10 * time.Second)
	for count("o-2") == 0 || len(pendingIDs()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the restart: o-2 handled %d times, inbox %v", count("o-2"), pendingIDs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if a, b := count("o-1"), count("o-2"); a != 1 || b != 1 {
		t.Errorf("handler calls o-1 %d, o-2 %d; want each once", a, b)
	}
}

// TestInboxQueueIsBounded: with every handler held, no more commands are
// accepted (and acked) than the queue limit; the rest wait at the broker,
// paced by the prefetch, and run once a slot frees up. Without the bound
// all eight would be accepted at once.
func TestInboxQueueIsBounded(t *testing.T) {
	const limit, commands = 3, 8
	defer participant.SetInboxQueueLimit(limit)()
	ctx := t.Context()
	tr := inmem.New(inmem.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = tr.Close() })
	if err := tr.Declare(ctx, transport.Queue{Name: orders.PaymentService}); err != nil {
		t.Fatal(err)
	}
	dedupe := participant.NewMemoryDeduper()
	var (
		mu    sync.Mutex
		calls = map[string]int{}
	)
	release := make(chan struct{})
	p := participant.New(tr, ordersRegistry(t), orders.PaymentService, participant.WithDeduper(dedupe), participant.WithLogger(quietLogger()))
	participant.Handle(p, func(_ context.Context, c *orders.ChargePayment, _ participant.Meta) (*orders.PaymentCharged, error) {
		mu.Lock()
		calls[c.OrderID]++
		mu.Unlock()
		<-release
		return &orders.PaymentCharged{OrderID: c.OrderID, ChargeID: "ch-" + c.OrderID}, nil
	})
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("Run did not return within 15s of the stop")
		}
	})
	for i := range commands {
		order := "o-" + string(rune('a'+i))
		env := message.Envelope{ID: message.NewID(), Kind: message.KindCommand, Type: "payments.ChargePayment.v1",
			Destination: orders.PaymentService, Key: order, Payload: []byte(`{"order_id":"` + order + `","amount":10}`)}
		if err := tr.Publish(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	pending := func() int {
		envs, err := dedupe.Pending(ctx, orders.PaymentService)
		if err != nil {
			t.Fatalf("pending: %v", err)
		}
		return len(envs)
	}
	deadline := time.Now().Add(10 * time.Second)
	for pending() < limit {
		if time.Now().After(deadline) {
			t.Fatalf("inbox holds %d commands after 10s, want %d accepted", pending(), limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // room for a wrongly accepted fourth
	if n := pending(); n != limit {
		t.Fatalf("inbox holds %d commands with every handler held, want the limit %d", n, limit)
	}
	close(release)
	deadline = time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		if n == commands && pending() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the release: %d of %d commands handled, %d still in the inbox", n, commands, pending())
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for order, n := range calls {
		if n != 1 {
			t.Errorf("%s handled %d times, want once", order, n)
		}
	}
}
