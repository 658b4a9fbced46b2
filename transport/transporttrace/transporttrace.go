package transporttrace

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/telemetry"
	"github.com/sagaflow/sagaflow/transport"
)

// Transport decorates a transport.Transport with spans and counts. Make
// one with New.
type Transport struct {
	transport.Transport
	in     *telemetry.Instruments
	system string

	mu    sync.Mutex
	depth map[string]*atomic.Int64
}

// Option configures the decorator.
type Option func(*Transport)

// WithSystem sets the messaging.system attribute (default: the wrapped
// transport's MessagingSystem(), if it has one, else "sagaflow").
func WithSystem(system string) Option { return func(t *Transport) { t.system = system } }

// New wraps t. Spans and counts go to in (nil: no-op, W3C propagation).
func New(t transport.Transport, in *telemetry.Instruments, opts ...Option) *Transport {
	if in == nil {
		in = telemetry.Noop()
	}
	d := &Transport{Transport: t, in: in, depth: make(map[string]*atomic.Int64)}
	if s, ok := t.(interface{ MessagingSystem() string }); ok {
		d.system = s.MessagingSystem()
	}
	for _, o := range opts {
		o(d)
	}
	if d.system == "" {
		d.system = "sagaflow"
	}
	return d
}

// Unwrap returns the decorated transport (transport.Ready and
// transport.PublishReady ask it).
func (t *Transport) Unwrap() transport.Transport { return t.Transport }

// MessagingSystem returns the messaging.system the spans carry.
func (t *Transport) MessagingSystem() string { return t.system }

// Reconnects returns the wrapped transport's recovered connections (0 when
// it does not count them).
func (t *Transport) Reconnects() uint64 {
	if r, ok := t.Transport.(interface{ Reconnects() uint64 }); ok {
		return r.Reconnects()
	}
	return 0
}

// destination is where e goes: its destination queue, or, for an event,
// its type (events are routed by type).
func destination(e message.Envelope) string {
	if e.Destination != "" {
		return e.Destination
	}
	return e.Type
}

// attrs are a span's messaging attributes. They are set after the span
// starts, and only on a recording span: a span that is not sampled drops
// them, and building them for every message was a tenth of what the
// engine allocated with tracing off. (A sampler therefore does not see
// them; the OpenTelemetry SDK's standard samplers do not look.)
func (t *Transport) attrs(e message.Envelope, dest, opName, opType string) []attribute.KeyValue {
	a := []attribute.KeyValue{
		attribute.String("messaging.system", t.system),
		attribute.String("messaging.destination.name", dest),
		attribute.String("messaging.message.id", e.ID),
		attribute.String("messaging.operation.name", opName),
		attribute.String("messaging.operation.type", opType),
		telemetry.AttrMessageType.String(e.Type),
		attribute.String("sagaflow.message.kind", string(e.Kind)),
	}
	if e.CorrelationID != "" {
		a = append(a, attribute.String("messaging.message.conversation_id", e.CorrelationID))
	}
	if e.SagaID != "" {
		a = append(a, telemetry.AttrSagaID.String(e.SagaID))
	}
	return a
}

// Publish implements transport.Transport: a producer span, child of the
// context the message already carries in its headers (a message stamped
// when it was committed, as the saga and aggregate actors do), else of
// ctx's span; its context is written into the published copy's headers.
func (t *Transport) Publish(ctx context.Context, e message.Envelope) error {
	parent := ctx
	if telemetry.HasTraceContext(e) {
		parent = telemetry.Extract(ctx, t.in.Prop(), e)
	}
	dest := destination(e)
	sctx, span := t.in.Start(parent, "publish "+dest, trace.WithSpanKind(trace.SpanKindProducer))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(t.attrs(e, dest, "publish", "send")...)
	}
	e = e.Clone()
	telemetry.Inject(sctx, t.in.Prop(), &e)
	err := t.Transport.Publish(sctx, e)
	telemetry.RecordError(span, err)
	return err
}

func (t *Transport) depthOf(queue string) *atomic.Int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	d, ok := t.depth[queue]
	if !ok {
		d = new(atomic.Int64)
		t.depth[queue] = d
	}
	return d
}

// MailboxDepth returns, per consumed queue, the deliveries handed to the
// handler and not yet settled.
func (t *Transport) MailboxDepth() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int64, len(t.depth))
	for q, d := range t.depth {
		out[q] = d.Load()
	}
	return out
}

// Consume implements transport.Transport: each delivery is a consumer
// span, child of the producer span in its headers, that ends when the
// delivery is settled; the handler gets the span's context, and the
// delivery returns it from Context (see telemetry.DeliveryContext).
func (t *Transport) Consume(ctx context.Context, queue string, prefetch int, h transport.Handler) error {
	depth := t.depthOf(queue)
	return t.Transport.Consume(ctx, queue, prefetch, func(hctx context.Context, d transport.Delivery) {
		e := d.Envelope()
		sctx, span := t.in.Start(telemetry.Extract(hctx, t.in.Prop(), e), "process "+queue, trace.WithSpanKind(trace.SpanKindConsumer))
		if span.IsRecording() {
			span.SetAttributes(append(t.attrs(e, queue, "process", "process"),
				attribute.String("messaging.destination.partition.id", strconv.Itoa(d.Partition())),
				attribute.Int("sagaflow.delivery.attempt", d.Attempt()))...)
		}
		depth.Add(1)
		h(sctx, &delivery{Delivery: d, ctx: sctx, span: span, t: t, queue: queue, depth: depth})
	})
}

// delivery ends its span and leaves the mailbox count when settled.
type delivery struct {
	transport.Delivery
	ctx   context.Context
	span  trace.Span
	t     *Transport
	queue string
	depth *atomic.Int64
	once  sync.Once
}

// Context returns the context of the delivery's consumer span.
func (d *delivery) Context() context.Context { return d.ctx }

// Unwrap returns the decorated delivery.
func (d *delivery) Unwrap() transport.Delivery { return d.Delivery }

func (d *delivery) settled(outcome string, reason, err error) {
	d.once.Do(func() {
		d.depth.Add(-1)
		d.span.SetAttributes(attribute.String("sagaflow.settlement", outcome))
		switch {
		case err != nil:
			telemetry.RecordError(d.span, err)
		case reason != nil:
			d.span.RecordError(reason)
			d.span.SetStatus(codes.Error, outcome+": "+reason.Error())
		}
		d.span.End()
	})
}

// Ack implements transport.Delivery.
func (d *delivery) Ack(ctx context.Context) error {
	err := d.Delivery.Ack(ctx)
	d.settled("ack", nil, err)
	return err
}

// Requeue implements transport.Delivery.
func (d *delivery) Requeue(ctx context.Context, reason error) error {
	err := d.Delivery.Requeue(ctx, reason)
	d.settled("requeue", reason, err)
	return err
}

// Retry implements transport.Delivery.
func (d *delivery) Retry(ctx context.Context, delay time.Duration, reason error) error {
	err := d.Delivery.Retry(ctx, delay, reason)
	d.span.SetAttributes(attribute.Int64("sagaflow.retry.delay_ms", delay.Milliseconds()))
	d.settled("retry", reason, err)
	return err
}

// DeadLetter implements transport.Delivery, counting the dead letter.
func (d *delivery) DeadLetter(ctx context.Context, reason error) error {
	err := d.Delivery.DeadLetter(ctx, reason)
	if err == nil {
		d.t.in.DeadLetter(d.ctx, d.queue, d.Envelope().Type)
	}
	d.settled("dead-letter", reason, err)
	return err
}
