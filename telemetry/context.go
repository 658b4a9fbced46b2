package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/message"
)

// TracerName is the instrumentation scope of sagaflow's spans and metrics.
const TracerName = "github.com/sagaflow/sagaflow"

type sagaIDKey struct{}

// WithSagaID returns ctx carrying the ID of the saga being handled; the
// LogHandler adds it to every record as saga_id. An empty id returns ctx.
func WithSagaID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return context.WithValue(ctx, sagaIDKey{}, id)
}

// SagaID returns the saga ID WithSagaID put in ctx ("" when none).
func SagaID(ctx context.Context) string {
	id, _ := ctx.Value(sagaIDKey{}).(string)
	return id
}

// Inject writes the trace context of ctx (and its baggage) into e's
// headers with p. It does nothing when ctx carries no valid span, so a
// message keeps the context it already had.
func Inject(ctx context.Context, p propagation.TextMapPropagator, e *message.Envelope) {
	if p == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	if e.Headers == nil {
		e.Headers = make(map[string]string, 2)
	}
	p.Inject(ctx, propagation.MapCarrier(e.Headers))
}

// Extract returns ctx with the remote span context (and baggage) found in
// e's headers, or ctx itself when they carry none.
func Extract(ctx context.Context, p propagation.TextMapPropagator, e message.Envelope) context.Context {
	if p == nil || len(e.Headers) == 0 {
		return ctx
	}
	return p.Extract(ctx, propagation.MapCarrier(e.Headers))
}

// HasTraceContext reports whether e carries a W3C traceparent header.
func HasTraceContext(e message.Envelope) bool {
	return e.Header(message.HeaderTraceParent) != ""
}

// ContextCarrier is implemented by deliveries that know the context they
// are handled in: the consume span of the tracing transport decorator.
type ContextCarrier interface {
	// Context returns the delivery's handling context.
	Context() context.Context
}

// DeliveryContext returns the context to handle delivery d in, derived
// from ctx (which keeps ctx's cancellation): the delivery's own context
// when it has one (a consume span), otherwise the trace context in its
// envelope's headers.
func DeliveryContext(ctx context.Context, p propagation.TextMapPropagator, d interface {
	Envelope() message.Envelope
}) context.Context {
	if cc, ok := d.(ContextCarrier); ok {
		if sc := trace.SpanFromContext(cc.Context()); sc.SpanContext().IsValid() {
			return trace.ContextWithSpan(ctx, sc)
		}
	}
	return Extract(ctx, p, d.Envelope())
}
