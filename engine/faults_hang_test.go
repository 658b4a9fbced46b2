package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/workflows"
)

// The hang test's participant: a carrier whose Book handler blocks until
// the test ends.
type (
	carrier   struct{ Booked bool }
	bookTruck struct {
		OrderID string `json:"order_id"`
	}
	truckBooked struct {
		OrderID string `json:"order_id"`
	}
)

func hangingCarrier(release <-chan struct{}, calls *atomic.Int32) *aggregate.Definition[carrier] {
	d := aggregate.New("trucks", "test.Carrier", func(string) carrier { return carrier{} })
	aggregate.Handle(d, func(_ carrier, c *bookTruck) ([]any, error) {
		calls.Add(1)
		<-release // the participant hangs
		return []any{truckBooked{OrderID: c.OrderID}}, nil
	})
	aggregate.Apply(d, func(s carrier, _ *truckBooked) carrier { s.Booked = true; return s })
	return d
}

// TestHangingParticipantTimesOutRetriesAndCompensates proves issue 11
// item 8: a participant that never answers (its handler blocks) makes the
// step's timeout fire, the step's retry policy send the command again (it
// times out too), and then the step fail and the completed step before it
// be compensated. None of 5 such sagas stays stuck; each ends
// compensated, with its stock reserved and released exactly once.
func TestHangingParticipantTimesOutRetriesAndCompensates(t *testing.T) {
	const attempts = 2
	release := make(chan struct{})
	var releaseOnce sync.Once
	var calls atomic.Int32
	wf := workflows.New("test.HangingShipment", 1, func(in orders.Input) (orders.State, error) { return orders.State{Input: in}, nil }).
		Send("reserve-stock", workflows.CommandStep[orders.State]{
			Service: orders.InventoryService,
			Command: func(s *orders.State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: orders.ReserveStock{OrderID: s.OrderID, SKU: s.SKU, Qty: s.Qty}}, nil
			},
			Compensate: func(s *orders.State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: orders.ReleaseStock{OrderID: s.OrderID}}, nil
			},
			Timeout: longTimeout,
		}).
		Send("book-truck", workflows.CommandStep[orders.State]{
			Service: "trucks",
			Command: func(s *orders.State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: bookTruck{OrderID: s.OrderID}}, nil
			},
			Timeout: 300 * time.Millisecond,
			Retry:   workflows.RetryPolicy{MaxAttempts: attempts, InitialInterval: 50 * time.Millisecond, MaxInterval: 50 * time.Millisecond, Multiplier: 1},
		})
	e := engine.New(engine.Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: quietLogger(), ShutdownTimeout: 2 * time.Second}).
		Register(orders.Messages()...).
		Register(engine.Message[bookTruck]("test.BookTruck.v1"), engine.Message[truckBooked]("test.TruckBooked.v1")).
		Register(orders.Inventory(), hangingCarrier(release, &calls), wf)
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	runEngine(t, e)
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // runs before the engine stops

	var ids []string
	for i := range 5 {
		in, _ := json.Marshal(orders.Input{OrderID: fmt.Sprintf("hang-%d", i), SKU: "x", Qty: 1})
		id, err := e.StartSaga(context.Background(), engine.StartRequest{Workflow: "test.HangingShipment", Input: in})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for i, id := range ids {
		s := waitSaga(t, e, id)
		if s.Status != workflows.StatusCompensated {
			t.Errorf("saga %s: %s (%s), want compensated", id, s.Status, s.Error)
		}
		want := []string{workflows.EventStepStarted, workflows.EventStepRetryScheduled, workflows.EventStepStarted, workflows.EventStepFailed}
		if got := stepEvents(s, "book-truck"); !equalStrings(got, want) {
			t.Errorf("saga %s: book-truck history %v, want %v", id, got, want)
		}
		orderID := fmt.Sprintf("hang-%d", i)
		if got, want := eventTypes(t, e.Store(), "inventory.Reservation", orderID), []string{"inventory.StockReserved.v1", "inventory.StockReleased.v1"}; !equalStrings(got, want) {
			t.Errorf("order %s: inventory events %v, want %v", orderID, got, want)
		}
	}
	if calls.Load() == 0 {
		t.Error("the hanging handler was never called")
	}
}
