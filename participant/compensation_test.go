package participant_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/participant"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/workflows"
)

// refundWorkflow charges, then ships; the shipping step fails for good
// (one attempt), so the charge is refunded, with compRetry.
func refundWorkflow(compRetry workflows.RetryPolicy) workflows.Workflow {
	return workflows.New("orders.ChargeThenShip", 1, func(in orders.Input) (orders.State, error) {
		if in.OrderID == "" {
			return orders.State{}, errors.New("order_id is required")
		}
		return orders.State{Input: in}, nil
	}).
		Send("charge-payment", workflows.CommandStep[orders.State]{
			Service: orders.PaymentService,
			Command: func(s *orders.State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: orders.ChargePayment{OrderID: s.OrderID, Amount: s.Amount}}, nil
			},
			Compensate: func(s *orders.State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: orders.RefundPayment{OrderID: s.OrderID}}, nil
			},
			CompensationRetry: compRetry,
			Timeout:           10 * time.Second,
		}).
		Send("ship-order", workflows.CommandStep[orders.State]{
			Service: orders.ShippingService,
			Command: func(s *orders.State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: orders.ShipOrder{OrderID: s.OrderID, Address: s.Address}}, nil
			},
			Timeout: 10 * time.Second,
		})
}

var nextAttemptIn = regexp.MustCompile(`next attempt in (\S+)$`)

// TestFailingCompensationIsRetriedThenParkedThenRetriedByOperator: a
// refund whose service keeps failing is retried with growing delays (the
// history shows each retry and its delay); after its 4 attempts the saga
// needs attention with the error, nothing undone is skipped, and it is
// listed by GET /v1/sagas?status=needs_attention; once the service is
// fixed, POST /v1/sagas/{id}/retry completes the refund.
func TestFailingCompensationIsRetriedThenParkedThenRetriedByOperator(t *testing.T) {
	tr := inmem.New(inmem.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = tr.Close() })
	l := newLedger()
	l.shipFailures["o-refund"] = -1
	l.refundFailures["o-refund"] = -1
	serveOrders(t, tr, l, func(string) participant.Deduper { return participant.NewMemoryDeduper() })
	comp := workflows.RetryPolicy{MaxAttempts: 4, InitialInterval: 20 * time.Millisecond, MaxInterval: time.Second, Multiplier: 2}
	opts := engineOptions()
	opts.Circuit = engine.CircuitSettings{Failures: -1} // this test is about the retry policy alone
	e := runEngine(t, tr, refundWorkflow(comp), opts)

	input, _ := json.Marshal(orders.Input{OrderID: "o-refund", SKU: "book", Qty: 1, Amount: 20, Address: "1 Main St"})
	id, err := e.StartSaga(t.Context(), engine.StartRequest{Workflow: "orders.ChargeThenShip", Input: input})
	if err != nil {
		t.Fatal(err)
	}
	s := waitSaga(t, e, id)
	if s.Status != workflows.StatusNeedsAttention {
		t.Fatalf("status %s (%s), want needs_attention", s.Status, s.Error)
	}
	if !strings.Contains(s.Error, `compensation of step "charge-payment" failed after 4 attempts`) || !strings.Contains(s.Error, "bank unreachable") {
		t.Errorf("error %q: want the compensation, its attempts and the cause", s.Error)
	}
	var delays []time.Duration
	for _, r := range s.History {
		if r.Event == workflows.EventCompensationRetry {
			m := nextAttemptIn.FindStringSubmatch(r.Detail)
			if m == nil {
				t.Fatalf("retry record %+v: no delay in its detail", r)
			}
			d, err := time.ParseDuration(m[1])
			if err != nil {
				t.Fatal(err)
			}
			delays = append(delays, d)
		}
	}
	if want := []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond}; !slices.Equal(delays, want) {
		t.Errorf("compensation retry delays %v, want %v", delays, want)
	}
	if got, calls := l.get("o-refund"); !slices.Equal(got, []string{"charged"}) || calls["refund"] != 4*3 {
		t.Errorf("effects %v, refund calls %d; want only the charge, and 4 saga attempts of 3 calls each", got, calls["refund"])
	}

	var list engine.ListResponse
	getJSON(t, e.AdminURL()+"/v1/sagas?status=needs_attention", &list)
	if len(list.Sagas) != 1 || list.Sagas[0].ID != id {
		t.Fatalf("needs_attention listing %+v, want saga %s", list.Sagas, id)
	}

	l.mu.Lock()
	l.refundFailures["o-refund"] = 0 // the bank is back
	l.mu.Unlock()
	body, _ := json.Marshal(engine.ReasonRequest{Reason: "bank fixed"})
	resp, err := http.Post(e.AdminURL()+"/v1/sagas/"+id+"/retry", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST retry = %d, want 202", resp.StatusCode)
	}
	// Poll: the saga is still parked until the retry reaches it.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if s, err = e.GetSaga(t.Context(), id); err != nil {
			t.Fatal(err)
		}
		if s.Status.Terminal() || time.Now().After(deadline) {
			break
		}
	}
	if s.Status != workflows.StatusCompensated {
		t.Fatalf("after the retry: %s (%s), want compensated", s.Status, s.Error)
	}
	tail := view(s.History[len(s.History)-4:], nil, "").events
	if want := []string{"saga.retry_requested charge-payment", "compensation.started charge-payment", "compensation.succeeded charge-payment", "saga.compensated "}; !slices.Equal(tail, want) {
		t.Errorf("history ends %v, want %v", tail, want)
	}
	if got, _ := l.get("o-refund"); !slices.Equal(got, []string{"charged", "refunded"}) {
		t.Errorf("effects %v, want charged then refunded", got)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
