package actors

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/telemetry"
	"github.com/sagaflow/sagaflow/workflows"
)

// A saga's trace: StartSaga makes a root span ("saga.start <workflow>")
// and writes its W3C context into the headers of the SagaTransition event
// of every commit of the saga, so that whoever loads the saga (another
// incarnation of its actor, another engine after a restart) continues the
// same trace. Each forward step and each compensation is a span, child of
// the root and linked to the delivery that caused it, from the transition
// that sent its command to the one that recorded its outcome; the command
// is published with the step span's context, so the participant's spans
// are its children. A step whose start this process did not see (it was
// started before a restart) gets a span at its outcome, starting when the
// saga's history says the step started, with the attribute
// sagaflow.step.start_unseen (so does a local step, which starts and ends in one transition).

// traceHeaders returns the W3C headers of ctx's span ("" map when none).
func traceHeaders(ctx context.Context, p propagation.TextMapPropagator) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	h := make(map[string]string, 2)
	p.Inject(ctx, propagation.MapCarrier(h))
	return h
}

// startRootSpan starts a saga's root span: a new trace, linked to the
// caller's span when there is one.
func (d *Deps) startRootSpan(ctx context.Context, wf workflows.Workflow, id string) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithAttributes(
		telemetry.AttrSagaType.String(wf.Name()), telemetry.AttrSagaID.String(id),
		attribute.Int("saga.version", wf.Version()))}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	ctx, span := d.Telemetry.Start(ctx, "saga.start "+wf.Name(), opts...)
	return telemetry.WithSagaID(ctx, id), span
}

// stampCommitTrace writes the saga's trace headers into c's transition
// event.
func stampCommitTrace(c *store.Commit, headers map[string]string) {
	if len(headers) == 0 || len(c.Events) == 0 {
		return
	}
	for k, v := range headers {
		c.Events[0].SetHeader(k, v)
	}
}

// commitTrace reads the trace headers of a saga commit's event.
func commitTrace(e message.Envelope) map[string]string {
	if e.Header(message.HeaderTraceParent) == "" {
		return nil
	}
	h := map[string]string{message.HeaderTraceParent: e.Header(message.HeaderTraceParent)}
	if ts := e.Header(message.HeaderTraceState); ts != "" {
		h[message.HeaderTraceState] = ts
	}
	return h
}

// openStep is a step (or compensation) span waiting for its outcome; a
// step whose start is known only from the saga's history (it started
// before this incarnation) has no span yet.
type openStep struct {
	span    trace.Span
	started time.Time
}

// ensureSpans makes the span bookkeeping on first use, with the steps and
// compensations that the loaded history shows started and not finished,
// so that their outcome's span and duration start when they did.
func (s *sagaEntity) ensureSpans() {
	if s.spans != nil {
		return
	}
	s.spans = &sagaSpans{open: make(map[string]*openStep)}
	for _, r := range s.snap.History {
		switch r.Event {
		case workflows.EventStepStarted:
			s.spans.open[spanKey(phaseForward, r.Step)] = &openStep{started: r.At}
		case workflows.EventCompensationStarted:
			s.spans.open[spanKey(phaseCompensation, r.Step)] = &openStep{started: r.At}
		case workflows.EventStepSucceeded, workflows.EventStepRetryScheduled, workflows.EventStepFailed:
			delete(s.spans.open, spanKey(phaseForward, r.Step))
		case workflows.EventCompensationSucceeded, workflows.EventCompensationNone, workflows.EventCompensationRetry, workflows.EventNeedsAttention:
			delete(s.spans.open, spanKey(phaseCompensation, r.Step))
		}
	}
}

// sagaSpans are the spans of one saga actor incarnation.
type sagaSpans struct {
	open map[string]*openStep // by phase + step name
	// started are spans begun for the decision being committed.
	started map[string]*openStep
}

const (
	phaseForward      = "forward"
	phaseCompensation = "compensation"
)

func spanKey(phase, step string) string { return phase + "/" + step }

// rootContext is ctx with the saga's root span context as remote parent.
func (s *sagaEntity) rootContext(ctx context.Context) context.Context {
	if len(s.snap.Trace) == 0 {
		return ctx
	}
	return s.deps.Telemetry.Prop().Extract(ctx, propagation.MapCarrier(s.snap.Trace))
}

// beginStepSpans starts the spans of the steps and compensations that
// dec starts and stamps their commands (and every other message dec
// sends or sets as a timer) with a trace context, before the commit.
func (s *sagaEntity) beginStepSpans(ctx context.Context, dec *workflows.Decision) {
	s.ensureSpans()
	s.spans.started = make(map[string]*openStep)
	root := s.rootContext(ctx)
	link := trace.Link{SpanContext: trace.SpanContextFromContext(ctx)}
	for _, r := range dec.Records {
		var phase, name string
		switch r.Event {
		case workflows.EventStepStarted:
			phase, name = phaseForward, "saga.step "+r.Step
		case workflows.EventCompensationStarted:
			phase, name = phaseCompensation, "saga.compensate "+r.Step
		default:
			continue
		}
		sctx, span := s.deps.Telemetry.Start(root, name, trace.WithLinks(link), trace.WithAttributes(
			telemetry.AttrSagaType.String(dec.Instance.Workflow), telemetry.AttrSagaID.String(dec.Instance.ID),
			telemetry.AttrSagaStep.String(r.Step), telemetry.AttrSagaPhase.String(phase), telemetry.AttrAttempt.Int(r.Attempt),
			attribute.String("messaging.message.id", r.MessageID)))
		s.spans.started[spanKey(phase, r.Step)] = &openStep{span: span, started: s.deps.now()}
		for i := range dec.Send {
			if dec.Send[i].ID == r.MessageID {
				telemetry.Inject(sctx, s.deps.Telemetry.Prop(), &dec.Send[i])
			}
		}
		if p := dec.Instance.Pending; p != nil && p.ID == r.MessageID {
			cp := p.Clone()
			telemetry.Inject(sctx, s.deps.Telemetry.Prop(), &cp)
			dec.Instance.Pending = &cp
		}
	}
	s.deps.stampMessages(root, dec.Send)
	for i := range dec.Timers {
		if !telemetry.HasTraceContext(dec.Timers[i].Message) {
			telemetry.Inject(root, s.deps.Telemetry.Prop(), &dec.Timers[i].Message)
		}
	}
}

// abortStepSpans ends the spans begun for a decision that was not
// committed (it is decided again, with new spans).
func (s *sagaEntity) abortStepSpans(err error) {
	if s.spans == nil {
		return
	}
	for _, o := range s.spans.started {
		o.span.SetStatus(codes.Error, "transition not committed")
		if err != nil {
			o.span.RecordError(err)
		}
		o.span.End()
	}
	s.spans.started = nil
}

// commitStepSpans runs after dec was committed: it ends the spans of the
// outcomes dec records, keeps the spans it started open, and counts the
// saga metrics.
func (s *sagaEntity) commitStepSpans(ctx context.Context, dec workflows.Decision) {
	s.ensureSpans()
	tel, wf := s.deps.Telemetry, dec.Instance.Workflow
	for _, r := range dec.Records {
		switch r.Event {
		case workflows.EventStepSucceeded:
			s.endStep(ctx, dec, r, phaseForward, "succeeded", nil)
		case workflows.EventStepRetryScheduled:
			s.endStep(ctx, dec, r, phaseForward, "retry", errors.New(r.Detail))
		case workflows.EventStepFailed:
			s.endStep(ctx, dec, r, phaseForward, "failed", errors.New(r.Detail))
			tel.SagaCount(ctx, telemetry.MetricSagasFailed, wf)
		case workflows.EventCompensationSucceeded, workflows.EventCompensationNone:
			s.endStep(ctx, dec, r, phaseCompensation, "succeeded", nil)
		case workflows.EventCompensationRetry:
			s.endStep(ctx, dec, r, phaseCompensation, "retry", errors.New(r.Detail))
		case workflows.EventNeedsAttention:
			s.endStep(ctx, dec, r, phaseCompensation, "failed", errors.New(r.Detail))
			tel.SagaCount(ctx, telemetry.MetricSagasParked, wf)
		case workflows.EventCancelRequested:
			for key, o := range s.spans.open {
				if len(key) > len(phaseForward) && key[:len(phaseForward)] == phaseForward {
					if o.span != nil {
						o.span.SetAttributes(telemetry.AttrSagaOutcome.String("cancelled"))
						o.span.End()
					}
					delete(s.spans.open, key)
				}
			}
		case workflows.EventCompleted:
			tel.SagaCount(ctx, telemetry.MetricSagasCompleted, wf)
		case workflows.EventCompensated:
			tel.SagaCount(ctx, telemetry.MetricSagasCompensated, wf)
		case workflows.EventCancelled:
			tel.SagaCount(ctx, telemetry.MetricSagasCancelled, wf)
		}
	}
	for key, o := range s.spans.started {
		s.spans.open[key] = o
	}
	s.spans.started = nil
}

// endStep ends the open span of r's step with outcome, recording err, or,
// when this incarnation did not see the step start, records a span for
// the outcome alone.
func (s *sagaEntity) endStep(ctx context.Context, dec workflows.Decision, r workflows.Record, phase, outcome string, err error) {
	key := spanKey(phase, r.Step)
	o, ok := s.spans.open[key]
	delete(s.spans.open, key)
	if ok {
		s.deps.Telemetry.StepDuration(ctx, dec.Instance.Workflow, r.Step, phase, outcome, max(s.deps.now().Sub(o.started), 0))
	}
	if !ok || o.span == nil {
		name := "saga.step " + r.Step
		if phase == phaseCompensation {
			name = "saga.compensate " + r.Step
		}
		opts := []trace.SpanStartOption{
			trace.WithLinks(trace.Link{SpanContext: trace.SpanContextFromContext(ctx)}),
			trace.WithAttributes(telemetry.AttrSagaType.String(dec.Instance.Workflow), telemetry.AttrSagaID.String(dec.Instance.ID),
				telemetry.AttrSagaStep.String(r.Step), telemetry.AttrSagaPhase.String(phase), telemetry.AttrAttempt.Int(r.Attempt),
				attribute.Bool("sagaflow.step.start_unseen", true)),
		}
		if ok {
			opts = append(opts, trace.WithTimestamp(o.started)) // from the history
		}
		_, span := s.deps.Telemetry.Start(s.rootContext(ctx), name, opts...)
		o = &openStep{span: span}
	}
	o.span.SetAttributes(telemetry.AttrSagaOutcome.String(outcome))
	if err != nil {
		o.span.RecordError(err)
		o.span.SetStatus(codes.Error, err.Error())
	}
	o.span.End()
}
