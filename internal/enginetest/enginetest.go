// Package enginetest holds the set-up that tests of several packages share
// when they drive a real engine: running it for the length of a test and
// starting and awaiting order sagas.
package enginetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
)

// Bounds of Run: how long the engine may take to become ready, and to stop
// when the test ends.
const (
	ReadyWithin = 10 * time.Second
	StopWithin  = 15 * time.Second
)

// Run runs e until the test ends and returns once it is ready. The test
// fails if the engine stops before it is ready, is not ready within
// ReadyWithin, stops with an error, or does not stop within StopWithin.
func Run(t testing.TB, e *engine.Engine) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("engine stopped with error: %v", err)
			}
		case <-time.After(StopWithin):
			t.Errorf("engine did not stop within %s", StopWithin)
		}
	})
	select {
	case err := <-done:
		t.Fatalf("engine stopped before ready: %v", err)
	case <-e.Ready():
	case <-time.After(ReadyWithin):
		t.Fatalf("engine not ready within %s", ReadyWithin)
	}
}

// StartOrder starts an order saga for in, with the order ID as its
// correlation ID, and returns the saga's ID.
func StartOrder(t testing.TB, e *engine.Engine, in orders.Input) string {
	t.Helper()
	input, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.StartSaga(context.Background(), engine.StartRequest{Workflow: orders.WorkflowName, Input: input, CorrelationID: in.OrderID})
	if err != nil {
		t.Fatalf("start %s: %v", in.OrderID, err)
	}
	return id
}

// WaitSaga waits up to within for saga id to end and returns it.
func WaitSaga(t testing.TB, e *engine.Engine, id string, within time.Duration) engine.Saga {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	s, err := e.WaitSaga(ctx, id)
	if err != nil {
		t.Fatalf("wait for saga %s: %v", id, err)
	}
	return s
}
