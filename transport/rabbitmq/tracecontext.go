package rabbitmq

import (
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/message"
)

// traceHeaderNames are the envelope headers that are also sent as AMQP
// headers, so that tools and services reading RabbitMQ messages without
// sagaflow (telemetry.AMQPCarrier) see the W3C trace context.
var traceHeaderNames = []string{message.HeaderTraceParent, message.HeaderTraceState, message.HeaderBaggage}

// traceHeaders returns e's trace-context headers as AMQP headers (nil
// when it has none).
func traceHeaders(e message.Envelope) amqp.Table {
	var t amqp.Table
	for _, k := range traceHeaderNames {
		if v := e.Header(k); v != "" {
			if t == nil {
				t = make(amqp.Table, len(traceHeaderNames))
			}
			t[k] = v
		}
	}
	return t
}

// withTraceHeaders copies the trace context of the AMQP headers into the
// envelope when the envelope has none: a message published by another
// producer (or re-published by a tool) that set only AMQP headers keeps
// its trace.
func withTraceHeaders(e message.Envelope, h amqp.Table) message.Envelope {
	if e.Header(message.HeaderTraceParent) != "" {
		return e
	}
	tp, ok := h[message.HeaderTraceParent].(string)
	if !ok || tp == "" {
		return e
	}
	for _, k := range traceHeaderNames {
		if v, ok := h[k].(string); ok && v != "" {
			e.SetHeader(k, v)
		}
	}
	return e
}

// MessagingSystem returns "rabbitmq", the OpenTelemetry messaging.system
// of this transport's spans.
func (t *Transport) MessagingSystem() string { return "rabbitmq" }

// Reconnects returns how many times a connection of the transport was
// lost and recovered; the engine exports it as the metric
// sagaflow.transport.reconnects.
func (t *Transport) Reconnects() uint64 { return t.reconnects.Load() }

// ChannelErrors returns how many of the transport's channels were closed
// with an error (by the broker, for example for a delivery not acked
// within its consumer timeout, or with their lost connection) and then
// recovered.
func (t *Transport) ChannelErrors() uint64 { return t.channelErrors.Load() }
