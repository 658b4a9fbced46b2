package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/telemetry"
)

// setupTelemetry configures traces and metrics from the OTEL_* variables
// (see telemetry.Setup; both are off when none is set) and puts the
// providers into opts. The returned function flushes and stops them
// within 5s; serve calls it on exit, after the engine has stopped.
func setupTelemetry(ctx context.Context, opts *engine.Options) (func(), error) {
	p, err := telemetry.Setup(ctx, telemetry.WithServiceName(opts.Name))
	if err != nil {
		return nil, fmt.Errorf("OpenTelemetry (OTEL_* variables): %w", err)
	}
	opts.TracerProvider, opts.MeterProvider, opts.Propagator = p.TracerProvider, p.MeterProvider, p.Propagator
	if p.TracesOn || p.MetricsOn {
		opts.Logger.Info("OpenTelemetry export on", "traces", p.TracesOn, "metrics", p.MetricsOn)
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := p.Shutdown(sctx); err != nil {
			opts.Logger.Warn("OpenTelemetry flush on exit failed", "err", err)
		}
	}, nil
}
