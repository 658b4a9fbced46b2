package transporttrace_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/telemetry"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/transport/transporttest"
	"github.com/sagaflow/sagaflow/transport/transporttrace"
)

var features = transporttest.Features{
	Partitions:        4,
	DeliveryLimit:     4,
	MaxMessageSize:    64 << 10,
	RedeliveryTimeout: 5 * time.Second,
	QuietPeriod:       50 * time.Millisecond,
	RetryDelay:        100 * time.Millisecond,
}

func newInner(t *testing.T) *inmem.Transport {
	t.Helper()
	tr := inmem.New(inmem.WithPartitions(features.Partitions), inmem.WithDeliveryLimit(features.DeliveryLimit),
		inmem.WithMaxMessageSize(features.MaxMessageSize), inmem.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// The decorator must keep every promise of the transport it wraps. The
// suite checks that a message arrives exactly as published, headers
// included, while a recording tracer rewrites traceparent to the producer
// span (on purpose: TestPublishAndConsumeSpansAreParentAndChild); so the
// suite runs with the no-op tracer, which leaves headers alone, and the
// decorator's consume, settle and count paths all still run.
func TestDecoratedTransportPassesTheConformanceSuite(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transport.Transport { return transporttrace.New(newInner(t), telemetry.Noop()) }, features)
}

type instrumented struct {
	tr     *transporttrace.Transport
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
}

func newInstrumented(t *testing.T) instrumented {
	t.Helper()
	rec, reader := tracetest.NewSpanRecorder(), sdkmetric.NewManualReader()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	in, err := telemetry.NewInstruments(tp, sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return instrumented{tr: transporttrace.New(newInner(t), in, transporttrace.WithSystem("test")), spans: rec, reader: reader, tp: tp}
}

func command(key string) message.Envelope {
	return message.Envelope{ID: message.NewID(), Kind: message.KindCommand, Type: "t.Do.v1", Destination: "svc", Key: key,
		SagaID: "saga-1", OccurredAt: time.Now(), Payload: []byte(`{}`)}
}

// consumeOne consumes svc until one delivery arrives and returns it with
// its handler context.
func consumeOne(t *testing.T, tr transport.Transport) (context.Context, transport.Delivery, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan struct {
		ctx context.Context
		d   transport.Delivery
	}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tr.Consume(ctx, "svc", 8, func(hctx context.Context, d transport.Delivery) {
			got <- struct {
				ctx context.Context
				d   transport.Delivery
			}{hctx, d}
		})
	}()
	stop := func() { cancel(); <-done }
	select {
	case g := <-got:
		return g.ctx, g.d, stop
	case <-time.After(5 * time.Second):
		stop()
		t.Fatal("no delivery within 5s")
	}
	return nil, nil, nil
}

func TestPublishAndConsumeSpansAreParentAndChild(t *testing.T) {
	it := newInstrumented(t)
	ctx := context.Background()
	if err := it.tr.Declare(ctx, transport.Queue{Name: "svc"}); err != nil {
		t.Fatal(err)
	}
	pctx, caller := it.tp.Tracer("t").Start(ctx, "caller")
	if err := it.tr.Publish(pctx, command("k1")); err != nil {
		t.Fatal(err)
	}
	caller.End()
	hctx, d, stop := consumeOne(t, it.tr)
	defer stop()
	if !telemetry.HasTraceContext(d.Envelope()) {
		t.Fatalf("delivered envelope has no traceparent: %v", d.Envelope().Headers)
	}
	if depth := it.tr.MailboxDepth()["svc"]; depth != 1 {
		t.Errorf("mailbox depth %d with one unsettled delivery, want 1", depth)
	}
	consume := trace.SpanFromContext(hctx).SpanContext()
	if cc, ok := d.(telemetry.ContextCarrier); !ok || trace.SpanContextFromContext(cc.Context()).SpanID() != consume.SpanID() {
		t.Errorf("the delivery does not carry its consume span's context")
	}
	if err := d.DeadLetter(ctx, errors.New("bad input")); err != nil {
		t.Fatal(err)
	}
	if depth := it.tr.MailboxDepth()["svc"]; depth != 0 {
		t.Errorf("mailbox depth %d after settling, want 0", depth)
	}
	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range it.spans.Ended() {
		spans[s.Name()] = s
	}
	pub, proc := spans["publish svc"], spans["process svc"]
	if pub == nil || proc == nil {
		t.Fatalf("spans %v: want publish svc and process svc", spans)
	}
	if pub.Parent().SpanID() != caller.SpanContext().SpanID() || pub.SpanKind() != trace.SpanKindProducer {
		t.Errorf("publish span: parent %v kind %v, want the caller and producer", pub.Parent().SpanID(), pub.SpanKind())
	}
	if proc.Parent().SpanID() != pub.SpanContext().SpanID() || proc.SpanKind() != trace.SpanKindConsumer || proc.SpanContext().SpanID() != consume.SpanID() {
		t.Errorf("process span: parent %v kind %v, want the publish span and consumer", proc.Parent().SpanID(), proc.SpanKind())
	}
	if proc.Status().Code != codes.Error {
		t.Errorf("dead-lettered delivery's span status %v, want error", proc.Status())
	}
	attrs := map[string]string{}
	for _, a := range proc.Attributes() {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	for k, want := range map[string]string{"messaging.system": "test", "messaging.destination.name": "svc", "messaging.operation.type": "process",
		"messaging.message.id": d.Envelope().ID, "saga.id": "saga-1", "sagaflow.settlement": "dead-letter"} {
		if attrs[k] != want {
			t.Errorf("process span %s = %q, want %q", k, attrs[k], want)
		}
	}
	var rm metricdata.ResourceMetrics
	if err := it.reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	var deadLetters int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == telemetry.MetricDeadLetters {
				for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
					deadLetters += p.Value
				}
			}
		}
	}
	if deadLetters != 1 {
		t.Errorf("%s = %d, want 1", telemetry.MetricDeadLetters, deadLetters)
	}
}

// A message stamped with a trace context when it was committed (an outbox
// message published later by the relay) is published as a child of that
// context, not of the publisher's.
func TestPublishContinuesTheContextTheMessageCarries(t *testing.T) {
	it := newInstrumented(t)
	ctx := context.Background()
	if err := it.tr.Declare(ctx, transport.Queue{Name: "svc"}); err != nil {
		t.Fatal(err)
	}
	sctx, step := it.tp.Tracer("t").Start(ctx, "step")
	e := command("k2")
	telemetry.Inject(sctx, telemetry.Propagator(), &e)
	step.End()
	if err := it.tr.Publish(ctx, e); err != nil { // no span in ctx: the relay
		t.Fatal(err)
	}
	for _, s := range it.spans.Ended() {
		if s.Name() == "publish svc" {
			if s.Parent().SpanID() != step.SpanContext().SpanID() || s.SpanContext().TraceID() != step.SpanContext().TraceID() {
				t.Errorf("publish span parent %v trace %v, want the stamped step %v", s.Parent().SpanID(), s.SpanContext().TraceID(), step.SpanContext())
			}
			return
		}
	}
	t.Fatal("no publish span")
}
