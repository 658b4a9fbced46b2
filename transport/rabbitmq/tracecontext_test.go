package rabbitmq_test

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
)

// TestTraceContextTravelsInAMQPHeaders publishes a message with W3C trace
// headers and reads it raw from its partition queue: traceparent,
// tracestate and baggage are AMQP headers of the message, so a service
// reading the queue without sagaflow can continue the trace
// (telemetry.AMQPCarrier). Then a message that carries the trace context
// only in its AMQP headers is consumed with it in its envelope.
func TestTraceContextTravelsInAMQPHeaders(t *testing.T) {
	url := testenv.RabbitMQ(t)
	name := "trace-" + randomID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := rabbitmq.Dial(ctx, url, rabbitmq.WithName(name), rabbitmq.WithPartitions(1), rabbitmq.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	defer func() {
		if err := tr.DeleteTopology(context.Background(), "svc"); err != nil {
			t.Logf("delete topology: %v", err)
		}
	}()
	if err := tr.Declare(ctx, transport.Queue{Name: "svc"}); err != nil {
		t.Fatal(err)
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	e := message.Envelope{ID: message.NewID(), Kind: message.KindCommand, Type: "t.Do.v1", Destination: "svc", Key: "k",
		OccurredAt: time.Now(), Payload: []byte(`{}`),
		Headers: map[string]string{message.HeaderTraceParent: tp, message.HeaderTraceState: "v=1", message.HeaderBaggage: "tenant=a", "other": "x"}}
	if err := tr.Publish(ctx, e); err != nil {
		t.Fatal(err)
	}
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	queue := tr.Queues("svc")[0]
	// The partition queues are single-active-consumer quorum queues, which
	// refuse basic.get: read the message with a plain consumer.
	deliveries, err := ch.Consume(queue, "raw-reader", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var raw amqp.Delivery
	select {
	case raw = <-deliveries:
	case <-time.After(10 * time.Second):
		t.Fatalf("nothing on %s", queue)
	}
	for k, want := range map[string]string{"traceparent": tp, "tracestate": "v=1", "baggage": "tenant=a"} {
		if got, _ := raw.Headers[k].(string); got != want {
			t.Errorf("AMQP header %s = %q, want %q (headers %v)", k, got, want, raw.Headers)
		}
	}
	if _, ok := raw.Headers["other"]; ok {
		t.Errorf("a non-trace envelope header became an AMQP header: %v", raw.Headers)
	}
	// A producer outside sagaflow: the envelope has no traceparent, the
	// AMQP headers have one.
	bare := e.Clone()
	bare.ID = message.NewID()
	bare.Headers = nil
	body, err := message.MarshalEnvelope(bare, message.DefaultMaxSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Nack(false, false); err != nil { // dead-letter the first one out of the way
		t.Fatal(err)
	}
	if err := ch.Cancel("raw-reader", false); err != nil {
		t.Fatal(err)
	}
	if err := ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{
		ContentType: "application/json", MessageId: bare.ID, Body: body,
		Headers: amqp.Table{"traceparent": tp},
	}); err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	got := make(chan message.Envelope, 1)
	go func() {
		_ = tr.Consume(cctx, "svc", 1, func(_ context.Context, d transport.Delivery) {
			_ = d.Ack(context.Background())
			if d.Envelope().ID == bare.ID {
				got <- d.Envelope()
			}
		})
	}()
	defer ccancel()
	select {
	case env := <-got:
		if env.Header(message.HeaderTraceParent) != tp {
			t.Errorf("consumed envelope traceparent %q, want %q from the AMQP headers", env.Header(message.HeaderTraceParent), tp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the bare message was not delivered")
	}
}
