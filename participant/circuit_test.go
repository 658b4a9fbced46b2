package participant_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/participant"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/workflows"
)

// TestOpenCircuitPausesAndResumesSagas: a shipping service that keeps
// failing opens its circuit; the sagas waiting on it pause (history
// step.paused) instead of using up their 4 attempts; when the service
// recovers, a probe closes the circuit and every saga completes. Without
// the breaker the same sagas run out of attempts and compensate.
func TestOpenCircuitPausesAndResumesSagas(t *testing.T) {
	retry := workflows.RetryPolicy{MaxAttempts: 4, InitialInterval: 20 * time.Millisecond, MaxInterval: 50 * time.Millisecond, Multiplier: 2}
	ids := []string{"o-c1", "o-c2", "o-c3"}
	setup := func(t *testing.T, circuit engine.CircuitSettings) (*engine.Engine, *ledger, []string) {
		tr := inmem.New(inmem.WithLogger(quietLogger()))
		t.Cleanup(func() { _ = tr.Close() })
		l := newLedger()
		for _, id := range ids {
			l.shipFailures[id] = -1 // down until told otherwise
		}
		serveOrders(t, tr, l, func(string) participant.Deduper { return participant.NewMemoryDeduper() })
		opts := engineOptions()
		opts.Circuit = circuit
		e := runEngine(t, tr, orders.Workflow(retry), opts)
		var sagas []string
		for _, id := range ids {
			sagas = append(sagas, startOrder(t, e, orders.Input{OrderID: id, SKU: "book", Qty: 1, Amount: 20, Address: "1 Main St"}))
		}
		return e, l, sagas
	}

	t.Run("breaker", func(t *testing.T) {
		e, l, sagas := setup(t, engine.CircuitSettings{Failures: 2, OpenFor: time.Second})
		// Every saga pauses at ship-order, and the circuit shows open.
		deadline := time.Now().Add(20 * time.Second)
		for paused := 0; paused < len(sagas); {
			paused = 0
			for _, id := range sagas {
				s, err := e.GetSaga(t.Context(), id)
				if err != nil {
					t.Fatal(err)
				}
				if s.Status != workflows.StatusRunning {
					t.Fatalf("saga %s is %s (%s) while the circuit should hold it", id, s.Status, s.Error)
				}
				if view(s.History, nil, "").count(workflows.EventStepPaused) > 0 {
					paused++
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d sagas paused within 20s", paused, len(sagas))
			}
			time.Sleep(5 * time.Millisecond)
		}
		if c := circuitOf(t, e, orders.ShippingService); c.State != "open" && c.State != "half-open" {
			t.Fatalf("shipping circuit %+v, want open", c)
		}
		l.mu.Lock()
		for _, id := range ids {
			l.shipFailures[id] = 0 // the carrier is back
		}
		l.mu.Unlock()

		for _, id := range sagas {
			s := waitSaga(t, e, id)
			v := view(s.History, s.State, s.Error)
			if s.Status != workflows.StatusCompleted {
				t.Fatalf("saga %s: %s (%s), want completed; history %v", id, s.Status, s.Error, v.events)
			}
			if v.count(workflows.EventStepPaused) == 0 || v.count(workflows.EventStepRetryScheduled) >= retry.MaxAttempts-1 {
				t.Errorf("saga %s: %d pauses, %d retries; want pauses and attempts to spare: %v", id, v.count(workflows.EventStepPaused), v.count(workflows.EventStepRetryScheduled), v.events)
			}
			for _, r := range s.History {
				if r.Step == "ship-order" && r.Attempt > retry.MaxAttempts {
					t.Errorf("saga %s: record %+v beyond the %d attempts", id, r, retry.MaxAttempts)
				}
				if r.Event == workflows.EventStepPaused && (r.Step != "ship-order" || !strings.Contains(r.Detail, "circuit to shipping is open")) {
					t.Errorf("saga %s: pause record %+v", id, r)
				}
			}
		}
		if c := circuitOf(t, e, orders.ShippingService); c.State != "closed" {
			t.Errorf("shipping circuit %+v after recovery, want closed", c)
		}
	})

	t.Run("no breaker", func(t *testing.T) {
		e, _, sagas := setup(t, engine.CircuitSettings{Failures: -1})
		for _, id := range sagas {
			s := waitSaga(t, e, id)
			v := view(s.History, s.State, s.Error)
			if s.Status != workflows.StatusCompensated || v.count(workflows.EventStepRetryScheduled) != retry.MaxAttempts-1 {
				t.Errorf("saga %s: %s (%s), want compensated after its %d attempts ran out: %v", id, s.Status, s.Error, retry.MaxAttempts, v.events)
			}
		}
		if cs := e.Circuits(); len(cs) != 0 {
			t.Errorf("circuits %+v with breakers off", cs)
		}
	})
}

// circuitOf reads one service's circuit from GET /v1/circuits.
func circuitOf(t *testing.T, e *engine.Engine, service string) engine.CircuitState {
	t.Helper()
	resp, err := http.Get(e.AdminURL() + "/v1/circuits")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body engine.CircuitsResponse
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/circuits: %d %v", resp.StatusCode, err)
	}
	for _, c := range body.Circuits {
		if c.Service == service {
			return c
		}
	}
	t.Fatalf("no circuit for %s in %+v", service, body.Circuits)
	return engine.CircuitState{}
}
