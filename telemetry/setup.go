package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Providers are the tracer and meter providers Setup made, with the
// propagator to use and the function that flushes and stops them.
type Providers struct {
	// TracerProvider makes the engine's tracers (a no-op one when traces
	// are off).
	TracerProvider trace.TracerProvider
	// MeterProvider makes the engine's meters (a no-op one when metrics
	// are off).
	MeterProvider metric.MeterProvider
	// Propagator carries trace context and baggage in message headers.
	Propagator propagation.TextMapPropagator
	// TracesOn and MetricsOn say which signals are exported.
	TracesOn, MetricsOn bool

	shutdown []func(context.Context) error
}

// Shutdown flushes what is buffered to the exporters and stops them,
// within ctx. It is safe to call on providers that export nothing.
func (p *Providers) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range p.shutdown {
		if err := f(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("telemetry shutdown: %w", errors.Join(errs...))
	}
	return nil
}

// Option changes how Setup builds the providers.
type Option func(*setupConfig)

type setupConfig struct {
	serviceName string
	attrs       []attribute.KeyValue
	getenv      func(string) string // os.Getenv; the exporters read the environment themselves
}

// WithServiceName sets the service name used when OTEL_SERVICE_NAME is
// not set (the daemon passes the engine's name).
func WithServiceName(name string) Option {
	return func(c *setupConfig) { c.serviceName = name }
}

// WithAttributes adds resource attributes; OTEL_RESOURCE_ATTRIBUTES
// overrides them key by key.
func WithAttributes(attrs ...attribute.KeyValue) Option {
	return func(c *setupConfig) { c.attrs = append(c.attrs, attrs...) }
}

// Propagator returns the propagator sagaflow uses by default: W3C trace
// context and W3C baggage.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// Setup builds tracer and meter providers from the standard OpenTelemetry
// environment variables:
//
//   - OTEL_SDK_DISABLED=true turns both signals off.
//   - OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER: otlp, console (stdout,
//     for development) or none; metrics also take prometheus. When a
//     variable is unset the signal is off, unless an OTLP endpoint is set
//     (OTEL_EXPORTER_OTLP_ENDPOINT, or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT /
//     OTEL_EXPORTER_OTLP_METRICS_ENDPOINT), which means otlp.
//   - OTEL_EXPORTER_OTLP_PROTOCOL (and the per-signal variants): grpc or
//     http/protobuf (the default); OTEL_EXPORTER_OTLP_HEADERS,
//     OTEL_EXPORTER_OTLP_INSECURE and the other OTLP exporter variables
//     are read by the exporters themselves.
//   - OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES set the resource.
//   - OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG choose the sampler
//     (the SDK's default: parent-based, always on).
//
// The exporters are go.opentelemetry.io/contrib/exporters/autoexport's.
// Setup does not set the global providers; pass them to the engine
// (engine.Options.TracerProvider, MeterProvider).
func Setup(ctx context.Context, opts ...Option) (*Providers, error) {
	cfg := setupConfig{serviceName: "sagaflow", getenv: os.Getenv}
	for _, o := range opts {
		o(&cfg)
	}
	p := &Providers{
		TracerProvider: tracenoop.NewTracerProvider(),
		MeterProvider:  metricnoop.NewMeterProvider(),
		Propagator:     Propagator(),
	}
	if strings.EqualFold(strings.TrimSpace(cfg.getenv("OTEL_SDK_DISABLED")), "true") {
		return p, nil
	}
	tracesOn, err := signalOn(cfg.getenv, "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if err != nil {
		return nil, err
	}
	metricsOn, err := signalOn(cfg.getenv, "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
	if err != nil {
		return nil, err
	}
	if !tracesOn && !metricsOn {
		return p, nil
	}
	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if tracesOn {
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: traces exporter (OTEL_TRACES_EXPORTER=%q, OTEL_EXPORTER_OTLP_PROTOCOL=%q): %w",
				cfg.getenv("OTEL_TRACES_EXPORTER"), cfg.getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
		p.TracerProvider, p.TracesOn = tp, true
		p.shutdown = append(p.shutdown, tp.Shutdown)
	}
	if metricsOn {
		reader, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			_ = p.Shutdown(ctx)
			return nil, fmt.Errorf("telemetry: metrics exporter (OTEL_METRICS_EXPORTER=%q, OTEL_EXPORTER_OTLP_PROTOCOL=%q): %w",
				cfg.getenv("OTEL_METRICS_EXPORTER"), cfg.getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), err)
		}
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithResource(res))
		p.MeterProvider, p.MetricsOn = mp, true
		p.shutdown = append(p.shutdown, mp.Shutdown)
	}
	return p, nil
}

// signalOn reports whether a signal is exported: its exporter variable
// names one (not "none"), or, when it is unset, an OTLP endpoint is set.
func signalOn(getenv func(string) string, exporterVar, endpointVar string) (bool, error) {
	v := strings.TrimSpace(getenv(exporterVar))
	switch {
	case v == "":
		return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv(endpointVar) != "", nil
	case v == "none":
		return false, nil
	}
	for _, name := range strings.Split(v, ",") {
		switch strings.TrimSpace(name) {
		case "otlp", "console", "prometheus", "none":
		default:
			return false, fmt.Errorf("telemetry: %s=%q: want otlp, console or none", exporterVar, v)
		}
	}
	return true, nil
}

func newResource(ctx context.Context, cfg setupConfig) (*resource.Resource, error) {
	attrs := append([]attribute.KeyValue{attribute.String("service.name", cfg.serviceName)}, cfg.attrs...)
	res, err := resource.New(ctx,
		resource.WithAttributes(attrs...),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES: last, so they win
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource (OTEL_RESOURCE_ATTRIBUTES=%q): %w", cfg.getenv("OTEL_RESOURCE_ATTRIBUTES"), err)
	}
	return res, nil
}
