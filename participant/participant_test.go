package participant_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/participant"
	"github.com/sagaflow/sagaflow/store/embedded"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/workflows"
)

// TestOrderSagaWithParticipants runs the order saga on an engine whose
// three services are participants, over each transport: the happy path,
// a business failure that compensates, technical errors (and a panic)
// retried until they succeed, a duplicated command applied once and
// answered with the same reply, and bad commands dead-lettered.
func TestOrderSagaWithParticipants(t *testing.T) {
	for name, dial := range transports(t) {
		t.Run(name, func(t *testing.T) {
			engTr, partTr := dial(t)
			dup := &duplicating{Transport: partTr}
			engDup := &duplicating{Transport: engTr, dupType: "payments.ChargePayment.v1"}
			l := newLedger()
			l.shipFailures["o-flaky"] = 4 // 3 in place, a retryable reply, then 1 more
			payStore, err := embedded.Open(t.Context(), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = payStore.Close() })
			serveOrders(t, dup, l, func(service string) participant.Deduper {
				if service == orders.PaymentService {
					return participant.NewStoreDeduper(payStore)
				}
				return participant.NewMemoryDeduper()
			})
			e := runEngine(t, engDup, orders.Workflow(workflows.RetryPolicy{MaxAttempts: 3, InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond, Multiplier: 2}), engineOptions())

			cases := []struct {
				in          orders.Input
				wantStatus  workflows.Status
				wantEffects []string
				check       func(t *testing.T, s sagaView)
			}{
				{
					in:          orders.Input{OrderID: "o-ok", SKU: "book", Qty: 1, Amount: 20, Address: "1 Main St"},
					wantStatus:  workflows.StatusCompleted,
					wantEffects: []string{"reserved", "charged", "shipped"},
					check: func(t *testing.T, s sagaView) {
						if !strings.Contains(string(s.state), `"tracking_no":"trk-o-ok"`) || !strings.Contains(string(s.state), `"charge_id":"ch-o-ok"`) {
							t.Errorf("state %s: want the typed results applied", s.state)
						}
					},
				},
				{
					in:          orders.Input{OrderID: "o-declined", SKU: "book", Qty: 1, Amount: orders.MaxAmount + 1, Address: "1 Main St"},
					wantStatus:  workflows.StatusCompensated,
					wantEffects: []string{"reserved", "released"},
					check: func(t *testing.T, s sagaView) {
						if !strings.Contains(s.err, "payment declined") {
							t.Errorf("error %q: want the business failure's reason", s.err)
						}
						if s.count(workflows.EventStepRetryScheduled) != 0 {
							t.Errorf("a business failure was retried: %v", s.events)
						}
					},
				},
				{
					in:          orders.Input{OrderID: "o-flaky", SKU: "book", Qty: 1, Amount: 20, Address: "1 Main St"},
					wantStatus:  workflows.StatusCompleted,
					wantEffects: []string{"reserved", "charged", "shipped"},
					check: func(t *testing.T, s sagaView) {
						if n := s.count(workflows.EventStepRetryScheduled); n != 1 {
							t.Errorf("%d saga retries, want 1 (after the in-place budget of 3): %v", n, s.events)
						}
						if _, calls := l.get("o-flaky"); calls["ship"] != 5 {
							t.Errorf("ship handler called %d times, want 5", calls["ship"])
						}
					},
				},
			}
			for _, c := range cases {
				t.Run(c.in.OrderID, func(t *testing.T) {
					id := startOrder(t, e, c.in)
					s := waitSaga(t, e, id)
					if s.Status != c.wantStatus {
						t.Fatalf("status %s (%s), want %s", s.Status, s.Error, c.wantStatus)
					}
					if got, _ := l.get(c.in.OrderID); !slices.Equal(got, c.wantEffects) {
						t.Errorf("effects %v, want %v", got, c.wantEffects)
					}
					c.check(t, view(s.History, s.State, s.Error))
				})
			}

			t.Run("duplicate command", func(t *testing.T) {
				// Every ChargePayment was published twice: each was
				// applied once and answered with one reply, or twice
				// with the same one (a copy that arrives while the
				// first is accepted but not answered yet is absorbed by
				// the inbox; one that arrives after the answer gets the
				// recorded reply again).
				for _, order := range []string{"o-ok", "o-flaky"} {
					if _, calls := l.get(order); calls["charge"] != 1 {
						t.Errorf("%s: charge handler called %d times, want 1", order, calls["charge"])
					}
				}
				charges := chargeCommands(t, engDup)
				replies := dup.repliesTo(charges)
				byCause := map[string][]string{}
				for _, r := range replies {
					byCause[r.CausationID] = append(byCause[r.CausationID], r.ID)
				}
				if len(byCause) != len(charges) {
					t.Fatalf("replies to %d of %d charge commands", len(byCause), len(charges))
				}
				for cause, ids := range byCause {
					if len(ids) < 1 || len(ids) > 2 || ids[0] != ids[len(ids)-1] {
						t.Errorf("replies to %s: %v, want one reply, or the same reply twice", cause, ids)
					}
				}
			})

			t.Run("bad commands dead-lettered", func(t *testing.T) {
				bad := []message.Envelope{
					{ID: message.NewID(), Kind: message.KindCommand, Type: "payments.ChargePayment.v1", Destination: orders.PaymentService, Key: "o-bad", Payload: []byte(`{"order_id":"o-bad","amount":"lots"}`)},
					{ID: message.NewID(), Kind: message.KindCommand, Type: "payments.Teleport.v1", Destination: orders.PaymentService, Key: "o-bad", Payload: []byte(`{}`)},
					{ID: message.NewID(), Kind: message.KindReply, Type: message.AcceptedType, Destination: orders.PaymentService, Key: "o-bad", Payload: []byte(`{}`)},
				}
				for _, b := range bad {
					if err := engTr.Publish(t.Context(), b); err != nil {
						t.Fatal(err)
					}
				}
				want := map[string]string{bad[0].ID: "payments.ChargePayment.v1", bad[1].ID: "no handler for command type", bad[2].ID: "not a command"}
				deadline := time.Now().Add(20 * time.Second)
				for {
					dls, err := engTr.DeadLetters(t.Context(), 1000)
					if err != nil {
						t.Fatal(err)
					}
					found := 0
					for _, dl := range dls {
						if w, ok := want[dl.Message.ID]; ok {
							if !strings.Contains(dl.Reason, w) {
								t.Errorf("dead letter %s: reason %q, want it to say %q", dl.Message.ID, dl.Reason, w)
							}
							found++
						}
					}
					if found == len(want) {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%d of %d bad commands dead-lettered within 20s: %+v", found, len(want), dls)
					}
					time.Sleep(20 * time.Millisecond)
				}
				if _, calls := l.get("o-bad"); len(calls) != 0 {
					t.Errorf("a handler was called for a bad command: %v", calls)
				}
				// The service goes on serving.
				id := startOrder(t, e, orders.Input{OrderID: "o-after", SKU: "pen", Qty: 2, Amount: 5, Address: "2 Main St"})
				if s := waitSaga(t, e, id); s.Status != workflows.StatusCompleted {
					t.Fatalf("after the bad commands: status %s (%s)", s.Status, s.Error)
				}
			})
		})
	}
}

// chargeCommands returns the IDs of the ChargePayment commands published.
func chargeCommands(t *testing.T, d *duplicating) map[string]bool {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.sent)
}

// TestRegistrationProblems: what cannot work is reported by Err and Run,
// naming the problem, instead of failing later on a delivery.
func TestRegistrationProblems(t *testing.T) {
	type unregistered struct{}
	tr := inmem.New(inmem.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = tr.Close() })
	p := participant.New(tr, ordersRegistry(t), "payments", participant.WithRetry(0, 0, 0))
	participant.Handle(p, func(context.Context, *unregistered, participant.Meta) (*message.Accepted, error) { return nil, nil })
	participant.Handle(p, func(context.Context, *orders.ChargePayment, participant.Meta) (*message.Accepted, error) {
		return nil, nil
	})
	participant.Handle(p, func(context.Context, *orders.ChargePayment, participant.Meta) (*message.Accepted, error) {
		return nil, nil
	})
	err := p.Err()
	for _, want := range []string{"retry attempts 0", "is not registered", `second handler for "payments.ChargePayment.v1"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Err() = %v, want it to say %q", err, want)
		}
	}
	if rerr := p.Run(t.Context()); rerr == nil || rerr.Error() != err.Error() {
		t.Errorf("Run = %v, want the registration problems", rerr)
	}
	if !participant.IsFailure(fmt.Errorf("wrapped: %w", participant.Fail(errors.New("no")))) || participant.IsFailure(errors.New("no")) || participant.Fail(nil) != nil {
		t.Error("Fail / IsFailure do not round-trip")
	}
}
