package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
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

// publishFailures counts the publishes its transport refused.
type publishFailures struct {
	transport.Transport
	n atomic.Int64
}

func (p *publishFailures) Publish(ctx context.Context, e message.Envelope) error {
	err := p.Transport.Publish(ctx, e)
	if err != nil {
		p.n.Add(1)
	}
	return err
}

// lockedBuffer is a bytes.Buffer safe for the engine's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestOversizedSagaCommandIsReportedNotRetriedForever (issue 11 item 7,
// the publisher side, for a message the engine itself emits): a saga step
// whose command is larger than the transport's limit is committed with it
// in the outbox; the publish fails with ErrPayloadTooLarge, which is
// logged at error level with the size and the limit, and the entry is
// removed from the outbox instead of being retried by the relay every
// interval for ever (before the fix it was). The step runs into its
// timeout, retries (the same refusal), fails and the saga compensates: it
// does not stay stuck.
func TestOversizedSagaCommandIsReportedNotRetriedForever(t *testing.T) {
	tr := inmem.New(inmem.WithMaxMessageSize(64<<10), inmem.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = tr.Close() })
	pf := &publishFailures{Transport: tr}
	var logs lockedBuffer
	wf := workflows.New("test.Oversized", 1, func(in orders.Input) (orders.State, error) { return orders.State{Input: in}, nil }).
		Send("reserve", workflows.CommandStep[orders.State]{
			Service: orders.InventoryService,
			Command: func(s *orders.State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: orders.ReserveStock{OrderID: s.OrderID, SKU: strings.Repeat("x", 100<<10), Qty: 1}}, nil
			},
			Timeout: 300 * time.Millisecond,
			Retry:   workflows.RetryPolicy{MaxAttempts: 2, InitialInterval: 50 * time.Millisecond, MaxInterval: 50 * time.Millisecond, Multiplier: 1},
		})
	e := engine.New(engine.Options{DataDir: t.TempDir(), Transport: pf, AdminAddr: "127.0.0.1:0", RelayInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError}))}).
		Register(orders.Messages()...).Register(orders.Inventory(), wf)
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	runEngine(t, e)
	in, _ := json.Marshal(orders.Input{OrderID: "o-big"})
	id, err := e.StartSaga(context.Background(), engine.StartRequest{Workflow: "test.Oversized", Input: in})
	if err != nil {
		t.Fatal(err)
	}
	if s := waitSaga(t, e, id); s.Status != workflows.StatusCompensated {
		t.Fatalf("status %s (%s), want compensated", s.Status, s.Error)
	}
	before := pf.n.Load()
	time.Sleep(3 * time.Second) // past the relay's 2s grace, then many of its intervals
	if after := pf.n.Load(); after != before || before != 2 {
		t.Errorf("refused publishes: %d when the saga ended, %d 3s later; want 2 (one per attempt) and no more", before, after)
	}
	if got := logs.String(); !strings.Contains(got, "can never be published") || !strings.Contains(got, "limit 65536") {
		t.Errorf("error log does not report the oversized command with its limit:\n%s", got)
	}
}
