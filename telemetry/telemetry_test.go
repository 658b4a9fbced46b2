package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/telemetry"
)

func clearOTEL(t *testing.T) {
	t.Helper()
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER",
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
}

func TestSetupFromEnvironment(t *testing.T) {
	cases := []struct {
		name              string
		env               map[string]string
		traces, metrics   bool
		wantErrMentioning string
	}{
		{name: "nothing set: off", env: nil},
		{name: "exporters none", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}},
		{name: "console traces", env: map[string]string{"OTEL_TRACES_EXPORTER": "console"}, traces: true},
		{name: "OTLP endpoint turns both on (http)", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, traces: true, metrics: true},
		{name: "OTLP gRPC traces only", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_METRICS_EXPORTER": "none"}, traces: true},
		{name: "disabled wins", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}},
		{name: "unknown exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, wantErrMentioning: "OTEL_TRACES_EXPORTER"},
		{name: "bad protocol", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}, wantErrMentioning: "carrier-pigeon"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clearOTEL(t)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			p, err := telemetry.Setup(context.Background(), telemetry.WithServiceName("test-engine"))
			if c.wantErrMentioning != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErrMentioning) {
					t.Fatalf("Setup: err %v, want one mentioning %q", err, c.wantErrMentioning)
				}
				return
			}
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			t.Cleanup(func() {
				// Nothing listens on the OTLP endpoints: do not wait for the export.
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				_ = p.Shutdown(ctx)
			})
			if p.TracesOn != c.traces || p.MetricsOn != c.metrics {
				t.Errorf("traces %v metrics %v, want %v %v", p.TracesOn, p.MetricsOn, c.traces, c.metrics)
			}
			_, span := p.TracerProvider.Tracer("t").Start(context.Background(), "x")
			if span.IsRecording() != c.traces {
				t.Errorf("span recording %v, want %v", span.IsRecording(), c.traces)
			}
			span.End()
		})
	}
}

func TestSetupResourceFromEnvironment(t *testing.T) {
	clearOTEL(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	t.Setenv("OTEL_SERVICE_NAME", "orders-engine")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging,team=payments")
	p, err := telemetry.Setup(context.Background(), telemetry.WithServiceName("default-name"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	tp, ok := p.TracerProvider.(*sdktrace.TracerProvider)
	if !ok {
		t.Fatalf("tracer provider %T, want the SDK's", p.TracerProvider)
	}
	rec := tracetest.NewSpanRecorder()
	tp.RegisterSpanProcessor(rec)
	_, span := tp.Tracer("t").Start(context.Background(), "x")
	span.End()
	got := map[string]string{}
	for _, kv := range rec.Ended()[0].Resource().Attributes() {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	for k, want := range map[string]string{"service.name": "orders-engine", "deployment.environment.name": "staging", "team": "payments"} {
		if got[k] != want {
			t.Errorf("resource %s = %q, want %q (all: %v)", k, got[k], want, got)
		}
	}
}

func TestShutdownFlushesToTheOTLPEndpoint(t *testing.T) {
	var (
		mu    sync.Mutex
		paths []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		if len(body) > 0 {
			paths = append(paths, r.URL.Path)
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	clearOTEL(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	p, err := telemetry.Setup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.TracerProvider.Tracer("t").Start(context.Background(), "buffered")
	span.End()
	c, _ := p.MeterProvider.Meter("t").Int64Counter("t.count")
	c.Add(context.Background(), 1)
	mu.Lock()
	before := len(paths)
	mu.Unlock()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	got := strings.Join(paths, " ")
	if before != 0 || !strings.Contains(got, "/v1/traces") || !strings.Contains(got, "/v1/metrics") {
		t.Errorf("exports before Shutdown %d, after %q: want the buffered span and metric flushed by Shutdown", before, got)
	}
}

func recordingContext(t *testing.T) (context.Context, trace.Span) {
	t.Helper()
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp.Tracer("t").Start(context.Background(), "handling")
}

func TestLogHandlerAddsTraceAndSagaIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "test")
	ctx, span := recordingContext(t)
	defer span.End()
	log.InfoContext(telemetry.WithSagaID(ctx, "saga-1"), "handled")
	log.Info("no context")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %q", len(lines), buf.String())
	}
	var first, second map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &first)
	_ = json.Unmarshal([]byte(lines[1]), &second)
	sc := span.SpanContext()
	if first["trace_id"] != sc.TraceID().String() || first["span_id"] != sc.SpanID().String() || first["saga_id"] != "saga-1" || first["component"] != "test" {
		t.Errorf("line with context: %v; want trace_id %s span_id %s saga_id saga-1", first, sc.TraceID(), sc.SpanID())
	}
	if _, ok := second["trace_id"]; ok {
		t.Errorf("line without context has trace_id: %v", second)
	}
}

func TestInjectExtractThroughEnvelopeAndAMQPHeaders(t *testing.T) {
	ctx, span := recordingContext(t)
	defer span.End()
	p := telemetry.Propagator()
	var e message.Envelope
	telemetry.Inject(context.Background(), p, &e) // no span: nothing written
	if e.Headers != nil {
		t.Fatalf("Inject without a span wrote %v", e.Headers)
	}
	telemetry.Inject(ctx, p, &e)
	if !telemetry.HasTraceContext(e) {
		t.Fatalf("no traceparent after Inject: %v", e.Headers)
	}
	got := trace.SpanContextFromContext(telemetry.Extract(context.Background(), p, e))
	if got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() || !got.IsRemote() {
		t.Errorf("extracted %v, want remote %v", got, span.SpanContext())
	}
	table := amqp.Table{}
	p.Inject(ctx, telemetry.AMQPCarrier(table))
	if table["traceparent"] != e.Header("traceparent") {
		t.Errorf("AMQP header traceparent %v, envelope %q", table["traceparent"], e.Header("traceparent"))
	}
	back := trace.SpanContextFromContext(p.Extract(context.Background(), telemetry.AMQPCarrier(table)))
	if back.SpanID() != span.SpanContext().SpanID() {
		t.Errorf("extracted from AMQP headers %v, want %v", back, span.SpanContext())
	}
	var _ propagation.TextMapCarrier = telemetry.AMQPCarrier(table)
}
