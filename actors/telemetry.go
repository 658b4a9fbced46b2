package actors

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/telemetry"
	"github.com/sagaflow/sagaflow/transport"
)

// handlingContext is the context a delivery is handled in: ctx's
// cancellation, the delivery's trace context (its consume span, when the
// transport is traced) and the saga ID for the logs.
func (d *Deps) handlingContext(ctx context.Context, dl transport.Delivery, sagaID string) context.Context {
	ctx = telemetry.DeliveryContext(ctx, d.Telemetry.Prop(), dl)
	return telemetry.WithSagaID(ctx, sagaID)
}

// logCtx is the context to log about dl with, when the caller has none.
func (d *Deps) logCtx(dl transport.Delivery) context.Context {
	return d.handlingContext(context.Background(), dl, dl.Envelope().SagaID)
}

// stampMessages writes ctx's trace context into the headers of the
// messages that carry none yet, before they are committed, so that a
// message the outbox relay or timer service publishes later (after a
// restart) still belongs to its trace.
func (d *Deps) stampMessages(ctx context.Context, msgs []message.Envelope) {
	for i := range msgs {
		if !telemetry.HasTraceContext(msgs[i]) {
			telemetry.Inject(ctx, d.Telemetry.Prop(), &msgs[i])
		}
	}
}

// startAggregateSpan starts the span of an aggregate handling a command.
func (d *Deps) startAggregateSpan(ctx context.Context, t aggregate.Type, id string, cmd message.Envelope) (context.Context, trace.Span) {
	return d.Telemetry.Start(ctx, "aggregate.handle "+cmd.Type, trace.WithAttributes(
		attribute.String("sagaflow.aggregate.type", t.Name()), attribute.String("sagaflow.aggregate.id", id),
		attribute.String("sagaflow.service", t.Service()), telemetry.AttrMessageType.String(cmd.Type),
		attribute.String("messaging.message.id", cmd.ID),
	))
}

// markRejection sets the aggregate span's status when the commit answers
// the command with a failure reply.
func markRejection(span trace.Span, outbox []message.Envelope, events int) {
	span.SetAttributes(attribute.Int("sagaflow.events", events))
	for _, m := range outbox {
		if m.Kind == message.KindReply && m.Type == message.FailureType {
			span.SetStatus(codes.Error, "command rejected")
			span.AddEvent("command rejected", trace.WithAttributes(attribute.String("sagaflow.reply", string(m.Payload))))
		}
	}
}
