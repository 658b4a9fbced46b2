package participant_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/internal/enginetest"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/participant"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
	"github.com/sagaflow/sagaflow/workflows"
)

// engineName is the engine's name, so its saga queue's.
const engineName = "engine"

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// ordersRegistry registers the order saga's messages for a participant
// (the engine registers the same names through orders.Messages).
func ordersRegistry(t *testing.T) *message.Registry {
	t.Helper()
	r := message.NewRegistry(nil)
	err := errors.Join(
		message.Register[orders.ReserveStock](r, "inventory.ReserveStock.v1"),
		message.Register[orders.ReleaseStock](r, "inventory.ReleaseStock.v1"),
		message.Register[orders.StockReserved](r, "inventory.StockReserved.v1"),
		message.Register[orders.StockReleased](r, "inventory.StockReleased.v1"),
		message.Register[orders.ChargePayment](r, "payments.ChargePayment.v1"),
		message.Register[orders.RefundPayment](r, "payments.RefundPayment.v1"),
		message.Register[orders.PaymentCharged](r, "payments.PaymentCharged.v1"),
		message.Register[orders.PaymentRefunded](r, "payments.PaymentRefunded.v1"),
		message.Register[orders.ShipOrder](r, "shipping.ShipOrder.v1"),
		message.Register[orders.OrderShipped](r, "shipping.OrderShipped.v1"),
	)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ledger is the participants' own "database": the effects they applied,
// per order, and how often each handler was called.
type ledger struct {
	mu      sync.Mutex
	effects map[string][]string
	calls   map[string]int
	// shipFailures makes the shipping handler fail with a technical error
	// this many times per order before it succeeds.
	shipFailures map[string]int
	// refundFailures makes the refund handler fail with a technical error
	// this many times per order before it succeeds (-1: always).
	refundFailures map[string]int
}

func newLedger() *ledger {
	return &ledger{effects: map[string][]string{}, calls: map[string]int{}, shipFailures: map[string]int{}, refundFailures: map[string]int{}}
}

func (l *ledger) apply(order, effect string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.effects[order] = append(l.effects[order], effect)
}

func (l *ledger) call(order, what string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls[order+"/"+what]++
	return l.calls[order+"/"+what]
}

func (l *ledger) failing(m map[string]int, order string, n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return m[order] < 0 || n <= m[order]
}

func (l *ledger) get(order string) ([]string, map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	calls := map[string]int{}
	for k, v := range l.calls {
		if o, what, _ := strings.Cut(k, "/"); o == order {
			calls[what] = v
		}
	}
	return slices.Clone(l.effects[order]), calls
}

// serveOrders serves the order saga's three services with participants,
// as separate services with their own databases would.
func serveOrders(t *testing.T, tr transport.Transport, l *ledger, dedupe func(service string) participant.Deduper) {
	t.Helper()
	opts := func(service string) []participant.Option {
		return []participant.Option{participant.WithDeduper(dedupe(service)), participant.WithLogger(quietLogger()), participant.WithRetry(3, time.Millisecond, 5*time.Millisecond)}
	}
	inv := participant.New(tr, ordersRegistry(t), orders.InventoryService, opts(orders.InventoryService)...)
	participant.Handle(inv, func(_ context.Context, c *orders.ReserveStock, _ participant.Meta) (*orders.StockReserved, error) {
		l.call(c.OrderID, "reserve")
		if c.Qty <= 0 {
			return nil, participant.Fail(fmt.Errorf("quantity %d: must be positive", c.Qty))
		}
		l.apply(c.OrderID, "reserved")
		return &orders.StockReserved{OrderID: c.OrderID, SKU: c.SKU, Qty: c.Qty}, nil
	})
	participant.Handle(inv, func(_ context.Context, c *orders.ReleaseStock, _ participant.Meta) (*orders.StockReleased, error) {
		l.call(c.OrderID, "release")
		l.apply(c.OrderID, "released")
		return &orders.StockReleased{OrderID: c.OrderID}, nil
	})

	pay := participant.New(tr, ordersRegistry(t), orders.PaymentService, opts(orders.PaymentService)...)
	participant.Handle(pay, func(_ context.Context, c *orders.ChargePayment, _ participant.Meta) (*orders.PaymentCharged, error) {
		l.call(c.OrderID, "charge")
		if c.Amount > orders.MaxAmount {
			return nil, participant.Fail(fmt.Errorf("%w: amount %d over %d", orders.ErrDeclined, c.Amount, orders.MaxAmount))
		}
		l.apply(c.OrderID, "charged")
		return &orders.PaymentCharged{OrderID: c.OrderID, ChargeID: "ch-" + c.OrderID, Amount: c.Amount}, nil
	})
	participant.Handle(pay, func(_ context.Context, c *orders.RefundPayment, _ participant.Meta) (*orders.PaymentRefunded, error) {
		if n := l.call(c.OrderID, "refund"); l.failing(l.refundFailures, c.OrderID, n) {
			return nil, errors.New("bank unreachable")
		}
		l.apply(c.OrderID, "refunded")
		return &orders.PaymentRefunded{OrderID: c.OrderID, ChargeID: "ch-" + c.OrderID}, nil
	})

	ship := participant.New(tr, ordersRegistry(t), orders.ShippingService, opts(orders.ShippingService)...)
	participant.Handle(ship, func(_ context.Context, c *orders.ShipOrder, _ participant.Meta) (*orders.OrderShipped, error) {
		n := l.call(c.OrderID, "ship")
		if l.failing(l.shipFailures, c.OrderID, n) {
			if n%2 == 0 {
				panic("carrier client crashed")
			}
			return nil, errors.New("carrier timeout")
		}
		l.apply(c.OrderID, "shipped")
		return &orders.OrderShipped{OrderID: c.OrderID, TrackingNo: "trk-" + c.OrderID}, nil
	})

	for _, p := range []*participant.Participant{inv, pay, ship} {
		runParticipant(t, p)
	}
}

// runParticipant runs p until the test ends and waits for it to stop.
func runParticipant(t *testing.T, p *participant.Participant) {
	t.Helper()
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("participant %s: %v", p.Service(), err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("participant %s did not stop within 15s", p.Service())
		}
	})
}

// runEngine runs an engine with the order saga but none of its aggregates:
// the participants serve those services.
func runEngine(t *testing.T, tr transport.Transport, wf workflows.Workflow, opts engine.Options) *engine.Engine {
	t.Helper()
	opts.Name, opts.Transport, opts.DataDir = engineName, tr, t.TempDir()
	opts.AdminAddr, opts.Logger = "127.0.0.1:0", quietLogger()
	e := engine.New(opts).Register(orders.Messages()...).Register(wf)
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	enginetest.Run(t, e)
	return e
}

func startOrder(t *testing.T, e *engine.Engine, in orders.Input) string {
	t.Helper()
	return enginetest.StartOrder(t, e, in)
}

func waitSaga(t *testing.T, e *engine.Engine, id string) engine.Saga {
	t.Helper()
	return enginetest.WaitSaga(t, e, id, 30*time.Second)
}

// duplicating publishes the commands of one type twice (the same
// envelope, so the same message ID), as a broker redelivery or an outbox
// relay racing the actor would; and records the replies published.
type duplicating struct {
	transport.Transport
	dupType string
	mu      sync.Mutex
	replies []message.Envelope
	sent    map[string]bool // IDs of the dupType commands published
}

func (d *duplicating) Publish(ctx context.Context, e message.Envelope) error {
	if e.Kind == message.KindReply {
		d.mu.Lock()
		d.replies = append(d.replies, e)
		d.mu.Unlock()
	}
	if err := d.Transport.Publish(ctx, e); err != nil {
		return err
	}
	if e.Kind == message.KindCommand && e.Type == d.dupType {
		d.mu.Lock()
		if d.sent == nil {
			d.sent = map[string]bool{}
		}
		d.sent[e.ID] = true
		d.mu.Unlock()
		return d.Transport.Publish(ctx, e)
	}
	return nil
}

func (d *duplicating) repliesTo(causations map[string]bool) []message.Envelope {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []message.Envelope
	for _, r := range d.replies {
		if causations[r.CausationID] {
			out = append(out, r)
		}
	}
	return out
}

// prefixed puts prefix before every queue name on the wire, so that this
// test's RabbitMQ queues are its own ("inventory" is a common name).
type prefixed struct {
	transport.Transport
	prefix string
}

func (p *prefixed) Declare(ctx context.Context, q transport.Queue) error {
	q.Name = p.prefix + q.Name
	return p.Transport.Declare(ctx, q)
}

func (p *prefixed) Publish(ctx context.Context, e message.Envelope) error {
	if e.Destination != "" {
		e.Destination = p.prefix + e.Destination
	}
	return p.Transport.Publish(ctx, e)
}

func (p *prefixed) Consume(ctx context.Context, queue string, prefetch int, h transport.Handler) error {
	return p.Transport.Consume(ctx, p.prefix+queue, prefetch, func(ctx context.Context, d transport.Delivery) {
		h(ctx, prefixedDelivery{Delivery: d, prefix: p.prefix})
	})
}

type prefixedDelivery struct {
	transport.Delivery
	prefix string
}

func (d prefixedDelivery) Envelope() message.Envelope {
	e := d.Delivery.Envelope()
	e.Destination = strings.TrimPrefix(e.Destination, d.prefix)
	return e
}

// transports returns, per transport kind, the engine's and the
// participants' transports (the same broker).
func transports(t *testing.T) map[string]func(t *testing.T) (eng, part transport.Transport) {
	return map[string]func(t *testing.T) (transport.Transport, transport.Transport){
		"inmem": func(t *testing.T) (transport.Transport, transport.Transport) {
			tr := inmem.New(inmem.WithLogger(quietLogger()))
			t.Cleanup(func() { _ = tr.Close() })
			return tr, tr
		},
		"rabbitmq": func(t *testing.T) (transport.Transport, transport.Transport) {
			u := testenv.RabbitMQ(t)
			name := "participant-test-" + randomSuffix(t)
			dial := func() *rabbitmq.Transport {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				tr, err := rabbitmq.Dial(ctx, u, rabbitmq.WithName(name), rabbitmq.WithLogger(quietLogger()))
				if err != nil {
					t.Fatal(err)
				}
				return tr
			}
			eng, part := dial(), dial()
			t.Cleanup(func() {
				_ = part.Close()
				_ = eng.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cleaner := dial()
				defer cleaner.Close()
				var queues []string
				for _, q := range []string{engineName, orders.InventoryService, orders.PaymentService, orders.ShippingService} {
					queues = append(queues, name+"-"+q)
				}
				if err := cleaner.DeleteTopology(ctx, queues...); err != nil {
					t.Logf("cleanup: %v", err)
				}
			})
			return &prefixed{Transport: eng, prefix: name + "-"}, &prefixed{Transport: part, prefix: name + "-"}
		},
	}
}

// sagaView is what the checks look at of a finished saga.
type sagaView struct {
	events []string
	state  json.RawMessage
	err    string
}

func view(h []workflows.Record, state json.RawMessage, err string) sagaView {
	v := sagaView{state: state, err: err}
	for _, r := range h {
		v.events = append(v.events, r.Event+" "+r.Step)
	}
	return v
}

func (v sagaView) count(event string) int {
	n := 0
	for _, e := range v.events {
		if strings.HasPrefix(e, event+" ") {
			n++
		}
	}
	return n
}

func engineOptions() engine.Options {
	return engine.Options{TimerInterval: 50 * time.Millisecond, RelayInterval: 50 * time.Millisecond}
}
