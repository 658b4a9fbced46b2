package engine_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/participant"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
	"github.com/sagaflow/sagaflow/workflows"
)

// pickStock asks the warehouse participant to pick an order's stock; it
// answers at once and publishes StockPicked when done.
type pickStock struct {
	OrderID string `json:"order_id"`
	SKU     string `json:"sku"`
}

// stockPicked is the warehouse's event for a pickStock: it carries the
// saga ID of the saga that asked.
type stockPicked struct {
	OrderID string `json:"order_id"`
}

// recordDelivery tells the warehouse participant that stock came in; it
// publishes StockArrived with the order as correlation ID.
type recordDelivery struct {
	OrderID string `json:"order_id"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
}

const (
	typePickStock      = "warehouse.PickStock.v1"
	typeStockPicked    = "warehouse.StockPicked.v1"
	typeRecordDelivery = "warehouse.RecordDelivery.v1"
)

// pickThenAwait asks the warehouse to pick the stock, waits for the
// StockPicked event it publishes (which carries the saga's ID; it may
// come before the reply, and is then kept in the inbox), then for a
// StockArrived event (which carries only the order's correlation ID).
func pickThenAwait(warehouse string) *workflows.Definition[orders.Input, approvalState] {
	return workflows.New("orders.PickAndAwait", 1, initApproval).
		Send("pick-stock", workflows.CommandStep[approvalState]{
			Service: warehouse,
			Command: func(s *approvalState) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: pickStock{OrderID: s.OrderID, SKU: s.SKU}}, nil
			},
			Timeout: 10 * time.Second,
		}).
		AwaitEvent("stock-picked", workflows.EventStep[approvalState]{
			Event: typeStockPicked, Timeout: time.Hour,
			Match: workflows.Matching(func(s *approvalState, e *stockPicked) bool { return e.OrderID == s.OrderID }),
			OnEvent: workflows.Payload(func(s *approvalState, e *stockPicked) error {
				s.Label = "picked " + e.OrderID
				return nil
			}),
		}).
		AwaitEvent("stock-arrives", workflows.EventStep[approvalState]{
			Event: typeStockArrived, Timeout: time.Hour,
			Match: workflows.Matching(func(s *approvalState, e *stockArrived) bool { return e.SKU == s.SKU }),
			OnEvent: workflows.Payload(func(s *approvalState, e *stockArrived) error {
				s.Arrived += e.Qty
				return nil
			}),
		})
}

// TestEventsReachWaitingSagasOverRabbitMQ: on RabbitMQ, an event a
// remote participant publishes with a saga ID reaches that saga only (even
// before the saga waits for it), and one it publishes with only a
// correlation ID reaches every running saga with that correlation ID; a
// redelivered event changes nothing and an event for no saga is parked
// with the reason.
func TestEventsReachWaitingSagasOverRabbitMQ(t *testing.T) {
	u := testenv.RabbitMQ(t)
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "sagaflow-events-" + hex.EncodeToString(b)
	warehouse := name + "-warehouse"
	t.Cleanup(func() {
		deleteTopology(t, u, name, name, "sagaflow", orders.InventoryService, orders.PaymentService, orders.ShippingService, warehouse)
	})
	dial := func() *rabbitmq.Transport {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		tr, err := rabbitmq.Dial(ctx, u, rabbitmq.WithName(name), rabbitmq.WithPartitions(scalePartitions), rabbitmq.WithLogger(quietLogger()))
		if err != nil {
			t.Fatalf("dial RabbitMQ: %v", err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		return tr
	}

	// The warehouse is a participant on its own connection: it publishes
	// its events on the same broker.
	wtr := dial()
	reg := message.NewRegistry(nil)
	if err := errors.Join(
		message.Register[pickStock](reg, typePickStock), message.Register[stockPicked](reg, typeStockPicked),
		message.Register[recordDelivery](reg, typeRecordDelivery), message.Register[stockArrived](reg, typeStockArrived),
	); err != nil {
		t.Fatal(err)
	}
	p := participant.New(wtr, reg, warehouse, participant.WithLogger(quietLogger()))
	var (
		mu        sync.Mutex
		published []message.Envelope
	)
	publish := func(ctx context.Context, body any, sagaID, corr, causation string) error {
		ev, err := reg.New(message.KindEvent, "warehouse-1", body)
		if err != nil {
			return err
		}
		ev.Source, ev.SagaID, ev.CorrelationID, ev.CausationID, ev.OccurredAt = warehouse, sagaID, corr, causation, time.Now()
		if err := wtr.Publish(ctx, ev); err != nil {
			return err
		}
		mu.Lock()
		published = append(published, ev)
		mu.Unlock()
		return nil
	}
	participant.Handle(p, func(ctx context.Context, c *pickStock, m participant.Meta) (*message.Accepted, error) {
		// Addressed by saga ID; the correlation ID, shared with another
		// saga of the order, must not widen it.
		return &message.Accepted{}, publish(ctx, &stockPicked{OrderID: c.OrderID}, m.SagaID, m.CorrelationID, m.MessageID)
	})
	participant.Handle(p, func(ctx context.Context, c *recordDelivery, m participant.Meta) (*message.Accepted, error) {
		return &message.Accepted{}, publish(ctx, &stockArrived{SKU: c.SKU, Qty: c.Qty}, "", c.OrderID, m.MessageID)
	})
	pctx, stopP := context.WithCancel(context.Background())
	pdone := make(chan error, 1)
	go func() { pdone <- p.Run(pctx) }()
	t.Cleanup(func() {
		stopP()
		if err := <-pdone; err != nil {
			t.Errorf("warehouse participant: %v", err)
		}
	})

	opts := engine.Options{Name: "sagaflow", Transport: dial(), Partitions: scalePartitions} // the saga queue deleteTopology deletes
	e := kindsEngine(t, opts, engine.Message[pickStock](typePickStock), engine.Message[stockPicked](typeStockPicked),
		engine.Message[recordDelivery](typeRecordDelivery), engine.Message[stockArrived](typeStockArrived), pickThenAwait(warehouse))
	runStoppable(t, e)

	// Two sagas of one order (correlation ID o-rmq1), one of another.
	first := startWF(t, e, "orders.PickAndAwait", orders.Input{OrderID: "o-rmq1", SKU: "pen", Qty: 1})
	second := startWF(t, e, "orders.PickAndAwait", orders.Input{OrderID: "o-rmq1", SKU: "pen", Qty: 1})
	other := startWF(t, e, "orders.PickAndAwait", orders.Input{OrderID: "o-rmq2", SKU: "ink", Qty: 1})
	// Each got the StockPicked event of its own command, by saga ID (once:
	// not also its sibling's by correlation ID), and now waits for stock.
	for _, id := range []string{first, second, other} {
		s := waitFor(t, e, id, "waiting for stock", waiting("stock-arrives"))
		got := 0
		for _, r := range s.History {
			if (r.Event == workflows.EventEventReceived || r.Event == workflows.EventEventBuffered) && r.Detail == typeStockPicked {
				got++
			}
		}
		if got != 1 || countEvents(s.History, workflows.EventStepSucceeded, "stock-picked") != 1 || !strings.HasPrefix(decodeApproval(t, s).Label, "picked o-rmq") {
			t.Fatalf("saga %s passed stock-picked without its event: %+v", id, s.History)
		}
	}

	// The warehouse publishes for order o-rmq1: both its sagas get it,
	// the other order's saga does not.
	if _, err := e.Send(context.Background(), warehouse, "o-rmq1", &recordDelivery{OrderID: "o-rmq1", SKU: "pen", Qty: 3}, nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{first, second} {
		s := waitSaga(t, e, id)
		if s.Status != workflows.StatusCompleted || decodeApproval(t, s).Arrived != 3 {
			t.Errorf("saga %s: status %s, arrived %d, want completed with 3", id, s.Status, decodeApproval(t, s).Arrived)
		}
	}
	if s, err := e.GetSaga(context.Background(), other); err != nil || s.Status != workflows.StatusRunning || decodeApproval(t, s).Arrived != 0 {
		t.Fatalf("the other order's saga: %+v, %v; want it still waiting", s.Status, err)
	}
	if _, err := e.Send(context.Background(), warehouse, "o-rmq2", &recordDelivery{OrderID: "o-rmq2", SKU: "ink", Qty: 5}, nil); err != nil {
		t.Fatal(err)
	}
	if s := waitSaga(t, e, other); s.Status != workflows.StatusCompleted || decodeApproval(t, s).Arrived != 5 {
		t.Errorf("saga %s: status %s, arrived %d, want completed with 5", other, s.Status, decodeApproval(t, s).Arrived)
	}
	before, err := e.GetSaga(context.Background(), first)
	if err != nil {
		t.Fatal(err)
	}

	// The same event again (a redelivery: the saga knows the ID it is
	// routed under as handled) and an event for no saga: the second is
	// parked with the reason; neither changes a saga. Both have the same
	// key, so the saga queue routes them in this order.
	var dup message.Envelope
	mu.Lock()
	for _, ev := range published {
		if ev.SagaID == first {
			dup = ev
		}
	}
	mu.Unlock()
	if dup.ID == "" {
		t.Fatalf("the warehouse published no event for saga %s", first)
	}
	if err := wtr.Publish(context.Background(), dup); err != nil {
		t.Fatal(err)
	}
	orphan, err := reg.New(message.KindEvent, "warehouse-1", &stockArrived{SKU: "pen", Qty: 1})
	if err != nil {
		t.Fatal(err)
	}
	orphan.Source, orphan.CorrelationID, orphan.OccurredAt = warehouse, "no-such-order", time.Now()
	if err := wtr.Publish(context.Background(), orphan); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		dls, err := e.DeadLetters(context.Background(), engine.DeadLetterFilter{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, dl := range dls {
			found = found || dl.Message.ID == orphan.ID && strings.Contains(dl.Reason, "no saga")
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the event for no saga was not parked with a reason: %+v", dls)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if after, _ := e.GetSaga(context.Background(), first); len(after.History) != len(before.History) || decodeApproval(t, after).Arrived != 3 {
		t.Errorf("a redelivered event changed the saga: history %d -> %d records, arrived %d", len(before.History), len(after.History), decodeApproval(t, after).Arrived)
	}
	// Nothing else was parked: no event reached a saga that did not wait
	// for it (a StockPicked routed by correlation ID to the sibling would).
	dls, err := e.DeadLetters(context.Background(), engine.DeadLetterFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, dl := range dls {
		if dl.Message.ID != orphan.ID && dl.Message.CausationID != dup.ID {
			t.Errorf("unexpected dead letter %s (%s): %s", dl.Message.ID, dl.Message.Type, dl.Reason)
		}
	}
}
