package telemetry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Metric names (OpenTelemetry style). Counters of sagas carry the
// attribute saga.type (the workflow's name).
const (
	MetricSagasStarted     = "sagaflow.sagas.started"
	MetricSagasCompleted   = "sagaflow.sagas.completed"
	MetricSagasCompensated = "sagaflow.sagas.compensated"
	MetricSagasCancelled   = "sagaflow.sagas.cancelled"
	// MetricSagasFailed counts sagas whose forward step failed for good
	// (they then compensate).
	MetricSagasFailed = "sagaflow.sagas.failed"
	// MetricSagasParked counts sagas that went to needs_attention.
	MetricSagasParked = "sagaflow.sagas.parked"
	// MetricStepDuration is the time from a step's (or compensation's)
	// attempt being sent to its outcome, in seconds, with saga.type,
	// saga.step, saga.phase (forward, compensation) and saga.outcome.
	MetricStepDuration = "sagaflow.step.duration"
	// MetricSagasInFlight is the number of running or compensating sagas
	// in the store.
	MetricSagasInFlight = "sagaflow.sagas.in_flight"
	// MetricOutboxLag is the age of the oldest unpublished outbox message,
	// in seconds (0 when none is pending).
	MetricOutboxLag = "sagaflow.outbox.lag"
	// MetricDeadLetters counts messages this engine dead-lettered, by
	// messaging.destination.name and sagaflow.message.type.
	MetricDeadLetters = "sagaflow.deadletters"
	// MetricMailboxDepth is the number of deliveries handed to the actors
	// of a queue and not yet settled, by messaging.destination.name.
	MetricMailboxDepth = "sagaflow.actor.mailbox.depth"
	// MetricTransportReconnects counts the transport's recovered
	// connections.
	MetricTransportReconnects = "sagaflow.transport.reconnects"
)

// Attribute keys used on sagaflow's spans and metrics.
const (
	AttrSagaType    = attribute.Key("saga.type")
	AttrSagaID      = attribute.Key("saga.id")
	AttrSagaStep    = attribute.Key("saga.step")
	AttrSagaPhase   = attribute.Key("saga.phase")
	AttrSagaOutcome = attribute.Key("saga.outcome")
	AttrAttempt     = attribute.Key("saga.attempt")
	AttrMessageType = attribute.Key("sagaflow.message.type")
)

// Instruments are the tracer, propagator and metric instruments the
// engine's parts share. A nil *Instruments records nothing.
type Instruments struct {
	// Tracer makes sagaflow's spans.
	Tracer trace.Tracer
	// Propagator writes and reads trace context in message headers.
	Propagator propagation.TextMapPropagator
	meter      metric.Meter

	sagas        map[string]metric.Int64Counter
	stepDuration metric.Float64Histogram
	deadLetters  metric.Int64Counter
}

// NewInstruments makes the instruments from the providers; nil providers
// and propagator mean no-op ones and the W3C propagator.
func NewInstruments(tp trace.TracerProvider, mp metric.MeterProvider, prop propagation.TextMapPropagator) (*Instruments, error) {
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	if prop == nil {
		prop = Propagator()
	}
	in := &Instruments{Tracer: tp.Tracer(TracerName), Propagator: prop, meter: mp.Meter(TracerName), sagas: make(map[string]metric.Int64Counter)}
	var errs []error
	for name, desc := range map[string]string{
		MetricSagasStarted:     "Sagas started.",
		MetricSagasCompleted:   "Sagas that completed every step.",
		MetricSagasCompensated: "Sagas that failed and compensated every completed step.",
		MetricSagasCancelled:   "Sagas cancelled and compensated.",
		MetricSagasFailed:      "Sagas whose step failed for good.",
		MetricSagasParked:      "Sagas parked as needs_attention after a compensation failed.",
	} {
		c, err := in.meter.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit("{saga}"))
		errs = append(errs, err)
		in.sagas[name] = c
	}
	var err error
	in.stepDuration, err = in.meter.Float64Histogram(MetricStepDuration, metric.WithUnit("s"),
		metric.WithDescription("Time from a step attempt being started to its outcome."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
	errs = append(errs, err)
	in.deadLetters, err = in.meter.Int64Counter(MetricDeadLetters, metric.WithUnit("{message}"),
		metric.WithDescription("Messages dead-lettered by this engine's consumers."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("telemetry: instruments: %w", err)
	}
	return in, nil
}

// Noop returns instruments that record nothing but still propagate trace
// context with the W3C propagator.
func Noop() *Instruments {
	in, _ := NewInstruments(nil, nil, nil) // no-op providers cannot fail
	return in
}

// SagaCount adds one to the saga counter name (one of the MetricSagas*
// names) for workflow.
func (in *Instruments) SagaCount(ctx context.Context, name, workflow string) {
	if in == nil {
		return
	}
	if c, ok := in.sagas[name]; ok {
		c.Add(ctx, 1, metric.WithAttributes(AttrSagaType.String(workflow)))
	}
}

// StepDuration records a step attempt's duration.
func (in *Instruments) StepDuration(ctx context.Context, workflow, step, phase, outcome string, d time.Duration) {
	if in == nil {
		return
	}
	in.stepDuration.Record(ctx, d.Seconds(), metric.WithAttributes(
		AttrSagaType.String(workflow), AttrSagaStep.String(step), AttrSagaPhase.String(phase), AttrSagaOutcome.String(outcome)))
}

// DeadLetter counts one dead-lettered message of type typeName from queue.
func (in *Instruments) DeadLetter(ctx context.Context, queue, typeName string) {
	if in == nil {
		return
	}
	in.deadLetters.Add(ctx, 1, metric.WithAttributes(attribute.String("messaging.destination.name", queue), AttrMessageType.String(typeName)))
}

// Observers are the callbacks behind the observable instruments; a nil
// callback leaves its instrument out.
type Observers struct {
	// SagasInFlight counts the running and compensating sagas.
	SagasInFlight func(ctx context.Context) (int64, error)
	// OutboxLag returns the age of the oldest pending outbox message (0
	// when none).
	OutboxLag func(ctx context.Context) (time.Duration, error)
	// MailboxDepth returns the unsettled deliveries per queue.
	MailboxDepth func() map[string]int64
	// Reconnects returns the transport's recovered connections so far.
	Reconnects func() uint64
}

// Observe registers the observable instruments; the returned function
// unregisters them. A callback that fails skips its observation.
func (in *Instruments) Observe(obs Observers) (func() error, error) {
	if in == nil {
		return func() error { return nil }, nil
	}
	var (
		insts []metric.Observable
		errs  []error
	)
	inflight, err := in.meter.Int64ObservableGauge(MetricSagasInFlight, metric.WithUnit("{saga}"), metric.WithDescription("Sagas running or compensating."))
	errs = append(errs, err)
	lag, err := in.meter.Float64ObservableGauge(MetricOutboxLag, metric.WithUnit("s"), metric.WithDescription("Age of the oldest unpublished outbox message."))
	errs = append(errs, err)
	depth, err := in.meter.Int64ObservableGauge(MetricMailboxDepth, metric.WithUnit("{message}"), metric.WithDescription("Deliveries handed to a queue's actors and not yet settled."))
	errs = append(errs, err)
	reconnects, err := in.meter.Int64ObservableCounter(MetricTransportReconnects, metric.WithUnit("{reconnect}"), metric.WithDescription("Recovered transport connections."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("telemetry: observable instruments: %w", err)
	}
	if obs.SagasInFlight != nil {
		insts = append(insts, inflight)
	}
	if obs.OutboxLag != nil {
		insts = append(insts, lag)
	}
	if obs.MailboxDepth != nil {
		insts = append(insts, depth)
	}
	if obs.Reconnects != nil {
		insts = append(insts, reconnects)
	}
	if len(insts) == 0 {
		return func() error { return nil }, nil
	}
	reg, err := in.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		if obs.SagasInFlight != nil {
			if n, err := obs.SagasInFlight(ctx); err == nil {
				o.ObserveInt64(inflight, n)
			}
		}
		if obs.OutboxLag != nil {
			if d, err := obs.OutboxLag(ctx); err == nil {
				o.ObserveFloat64(lag, d.Seconds())
			}
		}
		if obs.MailboxDepth != nil {
			for q, n := range obs.MailboxDepth() {
				o.ObserveInt64(depth, n, metric.WithAttributes(attribute.String("messaging.destination.name", q)))
			}
		}
		if obs.Reconnects != nil {
			o.ObserveInt64(reconnects, int64(obs.Reconnects()))
		}
		return nil
	}, insts...)
	if err != nil {
		return nil, fmt.Errorf("telemetry: register callback: %w", err)
	}
	return reg.Unregister, nil
}

// Start starts a span with in's tracer (a non-recording one when in is nil).
func (in *Instruments) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if in == nil {
		return tracenoop.NewTracerProvider().Tracer(TracerName).Start(ctx, name, opts...)
	}
	return in.Tracer.Start(ctx, name, opts...)
}

// Prop returns in's propagator (the W3C one when in is nil).
func (in *Instruments) Prop() propagation.TextMapPropagator {
	if in == nil || in.Propagator == nil {
		return Propagator()
	}
	return in.Propagator
}

// RecordError marks span as failed with err (nothing when err is nil).
func RecordError(span trace.Span, err error) {
	if err == nil {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}
