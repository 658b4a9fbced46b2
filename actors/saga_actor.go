package actors

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/telemetry"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/workflows"
)

// SagaStream names the stream of saga id.
func SagaStream(id string) string { return "saga/" + id }

// TypeSagaTransition is the event type of a saga's commits.
const TypeSagaTransition = "sagaflow.SagaTransitioned.v1"

// SagaTransition is the one event of every saga commit: what happened and
// the instance after it. A saga is event-sourced through the same append
// path as aggregates (I2); its state is the Instance of its latest commit.
type SagaTransition struct {
	Records  []workflows.Record `json:"records"`
	Instance workflows.Instance `json:"instance"`
}

// RegisterMessages registers the types this package persists and sends.
func RegisterMessages(r *message.Registry) error {
	if err := message.RegisterBuiltins(r); err != nil {
		return err
	}
	if err := workflows.RegisterMessages(r); err != nil {
		return err
	}
	// A record type: the transition carries the whole instance, and
	// encoding/json spent 3% of the engine's CPU on it.
	return message.RegisterRecord[SagaTransition](r, TypeSagaTransition)
}

// SagaSnapshot is a saga as read from the store.
type SagaSnapshot struct {
	Instance workflows.Instance
	// Version is the saga stream's commit version.
	Version uint64
	// History lists every record of every commit, oldest first.
	History []workflows.Record
	// Handled holds the IDs of the messages the saga consumed.
	Handled map[string]struct{}
	// Trace holds the W3C headers of the saga's root span (see saga_trace.go).
	Trace map[string]string
}

// LoadSaga reads saga id from the store (ErrNotFound when it does not exist).
func LoadSaga(ctx context.Context, deps *Deps, id string) (SagaSnapshot, error) {
	stream := SagaStream(id)
	commits, err := deps.Store.Load(ctx, stream, 1)
	if err != nil {
		return SagaSnapshot{}, fmt.Errorf("load saga %s: %w", id, err)
	}
	if len(commits) == 0 {
		return SagaSnapshot{}, fmt.Errorf("saga %s: %w", id, store.ErrNotFound)
	}
	snap := SagaSnapshot{Handled: make(map[string]struct{})}
	for _, c := range commits {
		for _, h := range c.Handled {
			snap.Handled[h] = struct{}{}
		}
		for _, e := range c.Events {
			v, err := deps.Registry.DecodeEnvelope(e)
			if err != nil {
				return SagaSnapshot{}, fmt.Errorf("load saga %s v%d: %w", id, c.Version, err)
			}
			t, ok := v.(*SagaTransition)
			if !ok {
				return SagaSnapshot{}, fmt.Errorf("load saga %s v%d: unexpected event %s", id, c.Version, e.Type)
			}
			snap.Instance = t.Instance
			snap.History = append(snap.History, t.Records...)
			if h := commitTrace(e); h != nil {
				snap.Trace = h
			}
		}
		snap.Version = c.Version
	}
	return snap, nil
}

// Errors of StartSaga.
var (
	// ErrSagaExists: the saga ID is taken.
	ErrSagaExists = errors.New("saga already exists")
	// ErrInvalidInput: the workflow refused the input.
	ErrInvalidInput = errors.New("invalid saga input")
)

// StartSaga creates saga id of workflow wf from input, durably, and takes
// its first step (see createSaga). Starting an ID that exists returns
// ErrSagaExists and changes nothing.
func StartSaga(ctx context.Context, deps *Deps, wf workflows.Workflow, id, correlationID string, input []byte) (err error) {
	ctx, span := deps.startRootSpan(ctx, wf, id)
	defer func() { telemetry.RecordError(span, err); span.End() }()
	env := deps.machineEnv()
	dec, err := workflows.Start(wf, env, id, correlationID, input)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	return createSaga(ctx, deps, wf, dec, "")
}

// createSaga commits a started saga's first version (with handled, the
// message that asked for it, if any). ErrSagaExists when the ID is taken.
//
// When the workflow's first step is a command step, the first version
// takes that step: it sends the command, as the saga's actor would on a
// resume, and its step span is begun here and handed to the actor with
// the instance. Otherwise (a local step, a wait, a branch, an If) the
// first version sends the saga a ResumeSaga, so that the step runs in the
// saga's own actor.
func createSaga(ctx context.Context, deps *Deps, wf workflows.Workflow, dec workflows.Decision, handled string) error {
	id, correlationID := dec.Instance.ID, dec.Instance.CorrelationID
	trace := traceHeaders(ctx, deps.Telemetry.Prop())
	// e is the saga's entity as its actor will have it: the spans of the
	// first step are begun on it and handed over with the instance.
	e := &sagaEntity{deps: deps, id: id, workflw: wf, loaded: true, snap: SagaSnapshot{Trace: trace}}
	if first, ok := deps.firstStep(ctx, wf, dec); ok {
		dec = first
		e.beginStepSpans(ctx, &dec)
	} else {
		resume, err := deps.Registry.New(message.KindCommand, id, &workflows.ResumeSaga{})
		if err != nil {
			return err
		}
		resume.Destination, resume.Source, resume.SagaID, resume.CorrelationID = deps.SagaQueue, deps.Source, id, correlationID
		resume.OccurredAt = dec.Instance.CreatedAt
		dec.Send = append(dec.Send, resume)
		deps.stampMessages(ctx, dec.Send)
	}
	c, err := sagaCommit(deps, dec, 1, handled)
	if err != nil {
		e.abortStepSpans(err)
		return err
	}
	stampCommitTrace(&c, trace)
	if err := deps.Store.Append(ctx, c); err != nil {
		e.abortStepSpans(err)
		if errors.Is(err, store.ErrConcurrency) || errors.Is(err, store.ErrAlreadyHandled) {
			return fmt.Errorf("start saga %s: %w", id, ErrSagaExists)
		}
		return fmt.Errorf("start saga %s: %w", id, err)
	}
	e.commitStepSpans(ctx, dec)
	deps.handoff.put(createdSnapshot(dec, commitTrace(c.Events[0]), handled), dec.State, e.spans, deps.now())
	deps.Telemetry.SagaCount(ctx, telemetry.MetricSagasStarted, dec.Instance.Workflow)
	deps.timersSet(c.Timers)
	deps.dispatch(ctx, c.Outbox)
	return nil
}

// firstStep takes the first step of a started saga (dec, from
// workflows.Start) when it is a command step, and returns the two
// transitions as one decision. The machine fails the step when the
// workflow's command builder errs or panics, as it would in the saga's
// actor, so such a saga may finish in its first version. ok is false for
// any other first step, and when the machine itself fails or lets a panic
// through: the saga is then created without its first step, and its actor
// meets the failure as it always has.
func (d *Deps) firstStep(ctx context.Context, wf workflows.Workflow, dec workflows.Decision) (out workflows.Decision, ok bool) {
	if first, ok := workflows.StepAt(wf, 0); !ok || first.Kind != workflows.KindCommand {
		return workflows.Decision{}, false
	}
	defer func() {
		if p := recover(); p != nil {
			d.Logger.WarnContext(ctx, "saga's first step panicked; its actor will take it", "saga_id", dec.Instance.ID, "panic", p)
			out, ok = workflows.Decision{}, false
		}
	}()
	next, err := workflows.Resume(ctx, wf, d.machineEnv(), dec.Instance, dec.State)
	if err != nil {
		return workflows.Decision{}, false
	}
	next.Records = append(slices.Clip(dec.Records), next.Records...)
	next.Send = append(slices.Clip(dec.Send), next.Send...)
	next.Timers = append(slices.Clip(dec.Timers), next.Timers...)
	next.CancelTimers = append(slices.Clip(dec.CancelTimers), next.CancelTimers...)
	return next, true
}

func (d *Deps) machineEnv() workflows.Env {
	env := workflows.Env{
		Now: d.now(), NewID: message.NewID, Rand: rand.Float64,
		Encode: d.Registry.Encode, Queue: d.SagaQueue, Source: d.Source,
	}
	if d.Breakers != nil {
		env.CircuitOpen = d.circuitOpen
	}
	return env
}

// sagaCommit turns a decision into the saga's commit at version.
func sagaCommit(deps *Deps, dec workflows.Decision, version uint64, handled string) (store.Commit, error) {
	inst := dec.Instance
	ev, err := deps.Registry.New(message.KindEvent, inst.ID, &SagaTransition{Records: dec.Records, Instance: inst})
	if err != nil {
		return store.Commit{}, fmt.Errorf("saga %s: encode transition: %w", inst.ID, err)
	}
	ev.Source, ev.SagaID, ev.CorrelationID, ev.Sequence, ev.OccurredAt = deps.Source, inst.ID, inst.CorrelationID, version, inst.UpdatedAt
	stream := SagaStream(inst.ID)
	c := store.Commit{
		Stream: stream, Version: version, Events: []message.Envelope{ev}, Outbox: dec.Send,
		CancelTimers: dec.CancelTimers, At: inst.UpdatedAt,
		Meta: &store.Meta{
			Kind: "saga", Type: inst.Workflow, Status: string(inst.Status), CorrelationID: inst.CorrelationID,
			CreatedAt: inst.CreatedAt, UpdatedAt: inst.UpdatedAt,
		},
	}
	if handled != "" {
		c.Handled = []string{handled}
	}
	for _, t := range dec.Timers {
		c.Timers = append(c.Timers, store.Timer{ID: t.ID, Stream: stream, DueAt: t.DueAt, Message: t.Message})
	}
	return c, nil
}

// NewSagaFactory returns the entity factory for saga instances.
func NewSagaFactory(deps *Deps) EntityFactory {
	return func(key string) entity { return &sagaEntity{deps: deps, id: key} }
}

// sagaEntity is one saga instance: it loads its latest Instance on first
// use and feeds each delivery to the workflow Machine.
type sagaEntity struct {
	deps    *Deps
	id      string
	loaded  bool
	snap    SagaSnapshot
	state   any
	workflw workflows.Workflow
	spans   *sagaSpans // see saga_trace.go
}

// load reads the saga, from the handoff when this process has just
// created it (read is false then: what it got may be behind the store),
// else from the store.
func (s *sagaEntity) load(ctx context.Context) (read bool, err error) {
	snap, state, spans, handedOver := s.deps.handoff.take(s.id, s.deps.now())
	if !handedOver {
		if snap, err = LoadSaga(ctx, s.deps, s.id); err != nil {
			return true, err
		}
	}
	wf, ok := s.deps.Workflows(snap.Instance.Workflow, snap.Instance.Version)
	if !ok {
		return !handedOver, fmt.Errorf("saga %s: %w: workflow %q v%d is not registered", s.id, errNoWorkflow, snap.Instance.Workflow, snap.Instance.Version)
	}
	s.snap, s.workflw, s.state, s.loaded = snap, wf, state, true
	if handedOver {
		s.spans = spans
	}
	return !handedOver, nil
}

var errNoWorkflow = errors.New("no workflow")

func (s *sagaEntity) handle(ctx context.Context, d transport.Delivery) {
	ctx = s.deps.handlingContext(ctx, d, s.id)
	env := d.Envelope()
	body, err := s.deps.decode(ctx, env)
	if err != nil {
		if !errors.Is(err, message.ErrUnknownType) && !errors.Is(err, message.ErrMalformed) {
			// The key store did not answer (a sealed reply): try later.
			s.deps.retryLater(d, err)
			return
		}
		s.deps.deadLetter(d, err)
		return
	}
	if env.Kind == message.KindEvent {
		s.routeEvent(ctx, d, env)
		return
	}
	var lastErr error
	fresh := false // the state was read from the store while handling this delivery
	for attempt := 1; attempt <= s.deps.commitAttempts(); attempt++ {
		if attempt > 1 && !sleep(ctx, backoff(attempt-1)) {
			break
		}
		if !s.loaded {
			if fresh, lastErr = s.load(ctx); lastErr != nil {
				if b, ok := body.(*workflows.StartChild); ok && errors.Is(lastErr, store.ErrNotFound) {
					s.startChild(ctx, d, env, b)
					return
				}
				if errors.Is(lastErr, store.ErrNotFound) || errors.Is(lastErr, errNoWorkflow) {
					s.deps.deadLetter(d, fmt.Errorf("%s %s for saga %s: %w", env.Kind, env.Type, s.id, lastErr))
					return
				}
				continue
			}
		}
		if _, dup := s.snap.Handled[env.ID]; dup {
			s.deps.ack(d)
			return
		}
		dec, err := s.decide(ctx, env, body)
		if err != nil {
			s.state = nil // user code may have touched it; decode afresh next time
			if !fresh {
				// The cached state may be behind the store: another node
				// handled this saga's messages meanwhile (its partition
				// moved, or two consumers were active). A reply it sent
				// on would look stale here; decide again on the state in
				// the store before refusing anything.
				s.loaded = false
				continue
			}
			s.settleRefused(d, env, err)
			return
		}
		if !dec.Changed() {
			s.deps.dispatch(ctx, dec.Send)
			s.deps.ack(d)
			return
		}
		s.beginStepSpans(ctx, &dec)
		c, err := sagaCommit(s.deps, dec, s.snap.Version+1, env.ID)
		if err != nil {
			s.abortStepSpans(err)
			s.deps.deadLetter(d, err)
			return
		}
		stampCommitTrace(&c, s.snap.Trace)
		lastErr = s.deps.Store.Append(ctx, c)
		if lastErr != nil {
			s.abortStepSpans(lastErr)
		}
		switch {
		case lastErr == nil:
			s.deps.observe(s.snap.Instance, env, body)
			s.commitStepSpans(ctx, dec)
			s.snap.Instance, s.snap.Version, s.state = dec.Instance, c.Version, dec.State
			s.snap.Handled[env.ID] = struct{}{}
			s.snap.History = nil // kept only when loaded; not needed to decide
			s.deps.timersSet(c.Timers)
			s.deps.dispatch(ctx, c.Outbox)
			s.deps.ack(d)
			return
		case errors.Is(lastErr, store.ErrAlreadyHandled):
			s.deps.ack(d)
			return
		default:
			s.loaded, s.state = false, nil
		}
	}
	s.deps.retryLater(d, fmt.Errorf("saga %s: message %s (%s) not committed after %d attempts: %w", s.id, env.ID, env.Type, s.deps.commitAttempts(), lastErr))
}

// decide feeds one message to the Machine.
func (s *sagaEntity) decide(ctx context.Context, env message.Envelope, body any) (workflows.Decision, error) {
	menv := s.deps.machineEnv()
	inst := s.snap.Instance
	switch b := body.(type) {
	case *workflows.ResumeSaga:
		return workflows.Resume(ctx, s.workflw, menv, inst, s.state)
	case *workflows.TimerFired:
		return workflows.OnTimer(ctx, s.workflw, menv, inst, s.state, b.TimerID)
	case *workflows.CancelSaga:
		return workflows.Cancel(ctx, s.workflw, menv, inst, s.state, b.Reason)
	case *workflows.SignalSaga:
		return workflows.OnSignal(ctx, s.workflw, menv, inst, s.state, env.ID, *b)
	case *workflows.RetrySaga:
		return workflows.Retry(ctx, s.workflw, menv, inst, s.state, b.Reason)
	case *workflows.RoutedEvent:
		return workflows.OnEvent(ctx, s.workflw, menv, inst, s.state, env.ID, b.Event)
	case *workflows.CompensateSaga:
		return workflows.CompensateRequested(ctx, s.workflw, menv, inst, s.state, env.ID, b.Reason)
	case *workflows.StartChild:
		// The child exists: the parent resent its start or retried its step.
		return workflows.StartedAgain(ctx, s.workflw, menv, inst, s.state, env.ID, b.ParentID)
	}
	if env.Kind == message.KindReply {
		return workflows.OnReply(ctx, s.workflw, menv, inst, s.state, env, body)
	}
	return workflows.Decision{}, fmt.Errorf("saga %s cannot handle a %s of type %q", s.id, env.Kind, env.Type)
}

// settleRefused settles a message the Machine refused. A stale timer or a
// cancel of a finished saga is normal and acked; a reply nobody awaits is
// parked with the reason (I3: never applied to the wrong state).
func (s *sagaEntity) settleRefused(d transport.Delivery, env message.Envelope, err error) {
	switch {
	case env.Type == workflows.TypeTimerFired && errors.Is(err, workflows.ErrStale):
		s.deps.ack(d)
	case env.Type == workflows.TypeCancel && errors.Is(err, workflows.ErrTerminal):
		s.deps.Logger.InfoContext(s.deps.logCtx(d), "cancel of a finished saga ignored", "saga_id", s.id, "status", s.snap.Instance.Status)
		s.deps.ack(d)
	case env.Type == workflows.TypeSignal && errors.Is(err, workflows.ErrTerminal),
		env.Type == workflows.TypeRetry && errors.Is(err, workflows.ErrNotParked):
		// The engine checked the status before sending; the saga moved on
		// since. Nothing to park.
		s.deps.Logger.InfoContext(s.deps.logCtx(d), "operator message no longer applies; ignored", "saga_id", s.id, "type", env.Type, "status", s.snap.Instance.Status, "err", err)
		s.deps.ack(d)
	default:
		s.deps.deadLetter(d, err)
	}
}
