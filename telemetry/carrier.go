package telemetry

import (
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/propagation"
)

// AMQPCarrier adapts AMQP message headers to a propagation.TextMapCarrier,
// for a service that reads sagaflow's RabbitMQ messages without sagaflow:
//
//	ctx := otel.GetTextMapPropagator().Extract(ctx, telemetry.AMQPCarrier(d.Headers))
//
// sagaflow's RabbitMQ transport writes traceparent, tracestate and baggage
// as AMQP headers of every message it publishes.
type AMQPCarrier amqp.Table

var _ propagation.TextMapCarrier = AMQPCarrier(nil)

// Get returns the header key as a string ("" when absent).
func (c AMQPCarrier) Get(key string) string {
	switch v := c[key].(type) {
	case nil:
		return ""
	case string:
		return v
	case []byte:
		return string(v)
	default:
		return fmt.Sprint(v)
	}
}

// Set sets header key to value.
func (c AMQPCarrier) Set(key, value string) { c[key] = value }

// Keys lists the header names.
func (c AMQPCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
