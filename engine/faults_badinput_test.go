package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/workflows"
)

// TestMissingHeadersAndWrongKindsAreDeadLettered proves the part of issue
// 11 item 7 that engine/badinput_test.go (unknown type, malformed payload)
// and transport/rabbitmq's TestUndecodableMessages (bytes that are not
// JSON, an envelope without its required fields, an oversized message on
// the wire) do not: a command for a saga without its reply-to header, a
// reply without the command it answers or without its saga, a reply sent
// to a participant and a command of a reply's type sent to a saga are each
// dead-lettered with a reason that names the problem, and the consumers go
// on: a saga on the same keys, started after them, completes. Publishing
// an oversized message fails at the publisher with ErrPayloadTooLarge.
func TestMissingHeadersAndWrongKindsAreDeadLettered(t *testing.T) {
	tr := inmem.New(inmem.WithPartitions(4), inmem.WithMaxMessageSize(64<<10), inmem.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = tr.Close() })
	e := newOrdersEngine(t, engine.Options{Transport: tr, Partitions: 4})
	ctx := context.Background()

	// A saga that exists, to address the saga-queue messages to.
	done := startOrder(t, e, orders.Input{OrderID: "o-7a", SKU: "x", Qty: 1, Amount: 1, Address: "a"})
	waitSaga(t, e, done)

	payload := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	msg := func(kind message.Kind, typ, dest, key string, p any) message.Envelope {
		return message.Envelope{ID: message.NewID(), Kind: kind, Type: typ, Destination: dest, Key: key,
			OccurredAt: time.Now(), Payload: payload(p), Source: "test"}
	}
	noReplyTo := msg(message.KindCommand, "inventory.ReserveStock.v1", orders.InventoryService, "o-7b", orders.ReserveStock{OrderID: "o-7b", SKU: "x", Qty: 1})
	noReplyTo.SagaID = done
	noCausation := msg(message.KindReply, "inventory.StockReserved.v1", "sagaflow", done, orders.StockReserved{OrderID: "o-7a"})
	noCausation.SagaID = done
	noSaga := msg(message.KindReply, "inventory.StockReserved.v1", "sagaflow", done, orders.StockReserved{OrderID: "o-7a"})
	noSaga.CausationID = message.NewID()
	replyToParticipant := msg(message.KindReply, "inventory.StockReserved.v1", orders.InventoryService, "o-7b", orders.StockReserved{OrderID: "o-7b"})
	replyToParticipant.SagaID, replyToParticipant.CausationID = done, message.NewID()
	commandToSaga := msg(message.KindCommand, "payments.PaymentCharged.v1", "sagaflow", done, orders.PaymentCharged{OrderID: "o-7a"})
	cases := []struct {
		name string
		env  message.Envelope
		want []string
	}{
		{"command for a saga without reply-to", noReplyTo, []string{"missing required header", message.HeaderReplyTo, noReplyTo.ID}},
		{"reply without causation", noCausation, []string{"missing required header", "causation_id", noCausation.ID}},
		{"reply without saga", noSaga, []string{"missing required header", "saga_id", noSaga.ID}},
		{"reply sent to a participant", replyToParticipant, []string{"accepts commands", "got a reply", "inventory.StockReserved.v1"}},
		{"command sent to a saga", commandToSaga, []string{"cannot handle a command", "payments.PaymentCharged.v1"}},
	}
	for _, c := range cases {
		if err := tr.Publish(ctx, c.env); err != nil {
			t.Fatalf("%s: publish: %v", c.name, err)
		}
	}
	// The consumers go on: a saga on the participants' key o-7b completes.
	id := startOrder(t, e, orders.Input{OrderID: "o-7b", SKU: "x", Qty: 1, Amount: 1, Address: "a"})
	if s := waitSaga(t, e, id); s.Status != workflows.StatusCompleted {
		t.Fatalf("saga after the bad messages: %s (%s), want completed", s.Status, s.Error)
	}
	checkEffects(t, e.Store(), "o-7b", completedEffects)

	reasons := map[string]string{}
	deadline := time.Now().Add(10 * time.Second)
	for len(reasons) < len(cases) && time.Now().Before(deadline) {
		dls, err := tr.DeadLetters(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, dl := range dls {
			reasons[dl.Message.ID] = dl.Reason
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range cases {
		reason, ok := reasons[c.env.ID]
		if !ok {
			t.Errorf("%s: not dead-lettered", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(reason, w) {
				t.Errorf("%s: reason %q does not mention %q", c.name, reason, w)
			}
		}
	}
	if len(reasons) != len(cases) {
		t.Errorf("%d dead letters, want %d: %v", len(reasons), len(cases), reasons)
	}

	// Publishing an oversized message fails at the publisher.
	_, err := e.Send(ctx, orders.InventoryService, "o-7c", &orders.ReserveStock{OrderID: "o-7c", SKU: strings.Repeat("x", 100<<10), Qty: 1}, nil)
	if !errors.Is(err, message.ErrPayloadTooLarge) || !strings.Contains(err.Error(), "limit") {
		t.Errorf("send of a 100 KiB command with a 64 KiB limit = %v, want ErrPayloadTooLarge naming the limit", err)
	}
}
