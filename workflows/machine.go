package workflows

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sagaflow/sagaflow/message"
)

// Errors the Machine returns; test with errors.Is.
var (
	// ErrStale: a reply or timer that the instance is not waiting for. The
	// caller parks it with the reason; it never changes the instance.
	ErrStale = errors.New("not awaited by the saga")
	// ErrTerminal: the saga has finished and takes no more input.
	ErrTerminal = errors.New("saga already finished")
	// ErrNotParked: a retry of a saga that does not need attention.
	ErrNotParked = errors.New("saga does not need attention")
)

// Env is what the Machine needs from its surroundings; injecting it keeps
// the Machine deterministic under test.
type Env struct {
	// Now is the current time.
	Now time.Time
	// NewID makes message and timer IDs.
	NewID func() string
	// Rand returns a uniform number in [0,1) for retry jitter.
	Rand func() float64
	// Encode turns a registered message struct into its type name and payload.
	Encode func(v any) (typeName string, payload []byte, err error)
	// Queue is the destination of replies and timers for sagas.
	Queue string
	// Source names the sender of commands.
	Source string
	// CircuitOpen, when set, is asked before each command is sent: while
	// the circuit to service is open the step pauses until retryAt,
	// without using up an attempt.
	CircuitOpen func(service string) (retryAt time.Time, open bool)
}

// Start creates instance id of wf from the JSON input. The instance starts
// running but takes no step: the caller persists it and then delivers a
// Resume, so that the first step runs in the saga's own actor.
func Start(wf Workflow, env Env, id, correlationID string, input []byte) (Decision, error) {
	state, err := wf.NewState(input)
	if err != nil {
		return Decision{}, err
	}
	enc, err := wf.EncodeState(state)
	if err != nil {
		return Decision{}, err
	}
	inst := Instance{
		ID: id, Workflow: wf.Name(), Version: wf.Version(), Status: StatusRunning,
		CorrelationID: correlationID, Input: append([]byte(nil), input...), State: enc,
		CreatedAt: env.Now, UpdatedAt: env.Now,
	}
	return Decision{Instance: inst, State: state, Records: []Record{{Event: EventStarted, At: env.Now}}}, nil
}

// run carries one transition's working data.
type run struct {
	ctx   context.Context
	wf    Workflow
	env   Env
	steps []StepInfo
	dec   Decision
}

func newRun(ctx context.Context, wf Workflow, env Env, inst Instance, state any) (*run, error) {
	if state == nil {
		s, err := wf.DecodeState(inst.State)
		if err != nil {
			return nil, err
		}
		state = s
	}
	inst.Done = append([]int(nil), inst.Done...)
	return &run{ctx: ctx, wf: wf, env: env, steps: wf.Steps(), dec: Decision{Instance: inst, State: state}}, nil
}

func (r *run) inst() *Instance { return &r.dec.Instance }

func (r *run) record(event string, step int, detail string) {
	rec := Record{Event: event, Attempt: r.inst().Attempt, Detail: detail, At: r.env.Now}
	if step >= 0 && step < len(r.steps) {
		rec.Step = r.steps[step].Name
	}
	r.dec.Records = append(r.dec.Records, rec)
}

// stampMessage sets MessageID on the records from index from on that have
// none: the records a reply or signal caused.
func (r *run) stampMessage(from int, id string) {
	for i := from; i < len(r.dec.Records); i++ {
		if r.dec.Records[i].MessageID == "" {
			r.dec.Records[i].MessageID = id
		}
	}
}

// finish encodes the state into the instance and stamps the time.
func (r *run) finish() (Decision, error) {
	if r.dec.Changed() {
		enc, err := r.wf.EncodeState(r.dec.State)
		if err != nil {
			return Decision{}, err
		}
		r.inst().State = enc
		r.inst().UpdatedAt = r.env.Now
	}
	return r.dec, nil
}

// Resume makes the instance take its next step: after it was created, or
// after an engine restart. A saga awaiting a reply sends its command again
// with the same message ID (the participant deduplicates it), and a saga
// with a live timer sets it again, since its firing may have been lost;
// both are recorded, so the caller commits them.
func Resume(ctx context.Context, wf Workflow, env Env, inst Instance, state any) (Decision, error) {
	if inst.Status.Terminal() || inst.Status == StatusNeedsAttention {
		return Decision{Instance: inst, State: state}, nil
	}
	r, err := newRun(ctx, wf, env, inst, state)
	if err != nil {
		return Decision{}, err
	}
	in := r.inst()
	if in.TimerID != "" {
		// The timer's firing may have been published and lost with the
		// process (the timer service deletes a timer once it published
		// it). Setting it again under the same ID is harmless: whichever
		// firing comes second finds the timer no longer live.
		r.armTimer(in.TimerID, in.TimerPurpose, in.TimerDue)
		r.record(EventTimerRearmed, in.Step, fmt.Sprintf("%s timer due %s", in.TimerPurpose, in.TimerDue.Format(time.RFC3339Nano)))
	}
	if p := in.Pending; p != nil {
		r.dec.Send = append(r.dec.Send, p.Clone())
	}
	if in.Pending == nil && in.TimerID == "" {
		if err := r.advance(); err != nil {
			return Decision{}, err
		}
	}
	return r.finish()
}

// OnReply applies the reply to the awaited command. body is the decoded
// payload (a *message.Failure for a failure reply). A reply to anything
// else returns ErrStale.
func OnReply(ctx context.Context, wf Workflow, env Env, inst Instance, state any, reply message.Envelope, body any) (Decision, error) {
	if inst.Status.Terminal() {
		return Decision{}, fmt.Errorf("saga %s: reply %s: %w", inst.ID, reply.ID, ErrTerminal)
	}
	if inst.Pending == nil || reply.CausationID != inst.Pending.ID {
		return Decision{}, fmt.Errorf("saga %s: reply %s to command %q: %w", inst.ID, reply.ID, reply.CausationID, ErrStale)
	}
	r, err := newRun(ctx, wf, env, inst, state)
	if err != nil {
		return Decision{}, err
	}
	in := r.inst()
	in.Pending = nil
	r.clearTimer()
	compensating := in.Status == StatusCompensating
	if f, ok := body.(*message.Failure); ok {
		if compensating {
			r.compensationAttemptFailed(errors.New(f.Reason), f.Retryable)
		} else {
			r.attemptFailed(errors.New(f.Reason), f.Retryable, false)
		}
	} else if compensating {
		r.record(EventCompensationSucceeded, in.Step, "")
		r.popDone()
	} else if err := r.wf.ApplyReply(in.Step, r.dec.State, body); err != nil {
		// The participant did the work; our handling of it failed. Undo it too.
		r.stepFailed(fmt.Errorf("handle reply: %w", err), true)
	} else {
		r.record(EventStepSucceeded, in.Step, "")
		in.Done = append(in.Done, in.Step)
		in.Step++
		in.Attempt = 0
		in.Uncertain = false
	}
	r.stampMessage(0, reply.ID)
	if err := r.advance(); err != nil {
		return Decision{}, err
	}
	return r.finish()
}

// OnTimer handles the firing of timer timerID: a late reply (timeout) or
// the end of a retry delay. A timer that is no longer live returns ErrStale.
func OnTimer(ctx context.Context, wf Workflow, env Env, inst Instance, state any, timerID string) (Decision, error) {
	if inst.TimerID == "" || inst.TimerID != timerID {
		return Decision{}, fmt.Errorf("saga %s: timer %q: %w", inst.ID, timerID, ErrStale)
	}
	r, err := newRun(ctx, wf, env, inst, state)
	if err != nil {
		return Decision{}, err
	}
	in := r.inst()
	purpose := in.TimerPurpose
	in.TimerID, in.TimerPurpose, in.TimerDue = "", "", time.Time{}
	if purpose == TimerTimeout && in.Pending != nil {
		in.Pending = nil
		timeout := fmt.Errorf("no reply within %v", r.steps[in.Step].Timeout)
		if in.Status == StatusCompensating {
			r.compensationAttemptFailed(timeout, true)
		} else {
			in.Uncertain = true
			r.attemptFailed(timeout, true, true)
		}
	}
	if err := r.advance(); err != nil {
		return Decision{}, err
	}
	return r.finish()
}

// Cancel stops a running saga and compensates its completed steps in
// reverse order. A step whose command is in flight, or one of whose
// attempts timed out, is compensated too, since it may have been applied:
// compensations must tolerate having nothing to undo. Cancelling a
// compensating saga marks it cancelled.
func Cancel(ctx context.Context, wf Workflow, env Env, inst Instance, state any, reason string) (Decision, error) {
	if inst.Status.Terminal() || inst.Status == StatusNeedsAttention {
		return Decision{}, fmt.Errorf("saga %s is %s: %w", inst.ID, inst.Status, ErrTerminal)
	}
	r, err := newRun(ctx, wf, env, inst, state)
	if err != nil {
		return Decision{}, err
	}
	in := r.inst()
	in.Cancelled = true
	if reason == "" {
		reason = "cancelled by request"
	}
	r.record(EventCancelRequested, -1, reason)
	if in.Status == StatusRunning {
		if (in.Pending != nil || in.Uncertain) && r.steps[in.Step].Compensable {
			in.Done = append(in.Done, in.Step)
		}
		in.Pending = nil
		r.clearTimer()
		in.Error = reason
		r.beginCompensation()
	}
	if err := r.advance(); err != nil {
		return Decision{}, err
	}
	return r.finish()
}

func (r *run) clearTimer() {
	in := r.inst()
	if in.TimerID != "" {
		r.dec.CancelTimers = append(r.dec.CancelTimers, in.TimerID)
	}
	in.TimerID, in.TimerPurpose, in.TimerDue = "", "", time.Time{}
}

func (r *run) popDone() {
	in := r.inst()
	in.Done = in.Done[:len(in.Done)-1]
	in.Attempt = 0
}

func (r *run) beginCompensation() {
	in := r.inst()
	in.Status = StatusCompensating
	in.Attempt = 0
	in.Uncertain = false
}

// attemptFailed handles a failed forward attempt: retry it if the policy
// allows, otherwise fail the step. unknownOutcome is true when the
// participant may have applied the command (a timeout).
func (r *run) attemptFailed(err error, retryable, unknownOutcome bool) {
	in := r.inst()
	step := r.steps[in.Step]
	if retryable && in.Attempt < step.Retry.attempts() {
		r.scheduleRetry(step.Retry, err, EventStepRetryScheduled)
		return
	}
	r.stepFailed(err, unknownOutcome)
}

// stepFailed fails the current step for good and starts compensation. A
// step that may have been applied (by this attempt, or by an earlier one
// that timed out) is compensated too, if it can be.
func (r *run) stepFailed(err error, mayBeApplied bool) {
	in := r.inst()
	r.record(EventStepFailed, in.Step, err.Error())
	if (mayBeApplied || in.Uncertain) && r.steps[in.Step].Compensable {
		in.Done = append(in.Done, in.Step)
	}
	in.Error = fmt.Sprintf("step %q failed: %v", r.steps[in.Step].Name, err)
	r.beginCompensation()
}

func (r *run) compensationAttemptFailed(err error, retryable bool) {
	in := r.inst()
	step := r.steps[in.Step]
	if retryable && in.Attempt < step.CompensationRetry.attempts() {
		r.scheduleRetry(step.CompensationRetry, err, EventCompensationRetry)
		return
	}
	in.Status = StatusNeedsAttention
	in.Error = fmt.Sprintf("compensation of step %q failed after %d attempts: %v", step.Name, in.Attempt, err)
	r.record(EventNeedsAttention, in.Step, in.Error)
}

func (r *run) scheduleRetry(p RetryPolicy, cause error, event string) {
	in := r.inst()
	delay := p.Delay(in.Attempt, r.env.Rand())
	r.setTimer(TimerRetry, r.env.Now.Add(delay))
	r.record(event, in.Step, fmt.Sprintf("%v; next attempt in %v", cause, delay.Round(time.Millisecond)))
}

func (r *run) setTimer(purpose TimerPurpose, due time.Time) {
	r.armTimer(r.env.NewID(), purpose, due)
}

// armTimer makes timer id with purpose, due at due, the saga's live timer.
func (r *run) armTimer(id string, purpose TimerPurpose, due time.Time) {
	in := r.inst()
	if due.IsZero() {
		due = r.env.Now
	}
	typeName, payload, err := r.env.Encode(TimerFired{TimerID: id})
	if err != nil {
		// The control types are registered by the engine; a failure here
		// is a programming error caught by the first test that runs.
		panic(fmt.Sprintf("workflows: encode timer: %v", err))
	}
	msg := message.Envelope{
		ID: r.env.NewID(), Kind: message.KindCommand, Type: typeName, Source: r.env.Source,
		Destination: r.env.Queue, Key: in.ID, SagaID: in.ID, CorrelationID: in.CorrelationID,
		OccurredAt: r.env.Now, Payload: payload,
	}
	r.dec.Timers = append(r.dec.Timers, TimerSpec{ID: id, DueAt: due, Message: msg})
	in.TimerID, in.TimerPurpose, in.TimerDue = id, purpose, due
}

// maxAdvance bounds the steps one transition may take: each step at most
// twice (forward and compensation), plus the final one.
func (r *run) maxAdvance() int { return 2*len(r.steps) + 2 }

// advance takes steps until the saga waits (for a reply or a timer) or ends.
func (r *run) advance() error {
	in := r.inst()
	for range r.maxAdvance() {
		if in.Pending != nil || in.TimerID != "" {
			return nil
		}
		switch in.Status {
		case StatusRunning:
			if in.Step >= len(r.steps) {
				in.Status = StatusCompleted
				r.record(EventCompleted, -1, "")
				return nil
			}
			if err := r.forward(); err != nil {
				return err
			}
		case StatusCompensating:
			if len(in.Done) == 0 {
				if in.Cancelled {
					in.Status = StatusCancelled
					r.record(EventCancelled, -1, in.Error)
				} else {
					in.Status = StatusCompensated
					r.record(EventCompensated, -1, in.Error)
				}
				return nil
			}
			in.Step = in.Done[len(in.Done)-1]
			if err := r.compensate(); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	return fmt.Errorf("saga %s: advance did not settle after %d steps", in.ID, r.maxAdvance())
}

// forward runs or sends the current step's next attempt.
func (r *run) forward() error {
	in := r.inst()
	step := r.steps[in.Step]
	in.Attempt++
	if step.Kind == KindLocal {
		_, err := r.wf.RunLocal(r.ctx, in.Step, r.dec.State, false)
		if err != nil {
			r.attemptFailed(err, !IsPermanent(err), false)
			return nil
		}
		r.record(EventStepSucceeded, in.Step, "")
		in.Done = append(in.Done, in.Step)
		in.Step++
		in.Attempt = 0
		return nil
	}
	c, service, _, err := r.wf.Command(in.Step, r.dec.State, false)
	if err != nil {
		r.stepFailed(err, false)
		return nil
	}
	if err := r.send(c, service, step.Timeout); errors.Is(err, errPaused) {
		return nil
	} else if err != nil {
		r.stepFailed(err, false)
		return nil
	}
	r.record(EventStepStarted, in.Step, in.Pending.ID)
	r.dec.Records[len(r.dec.Records)-1].MessageID = in.Pending.ID
	return nil
}

// compensate runs or sends the compensation of the step on top of Done.
func (r *run) compensate() error {
	in := r.inst()
	step := r.steps[in.Step]
	in.Attempt++
	if step.Kind == KindLocal {
		ok, err := r.wf.RunLocal(r.ctx, in.Step, r.dec.State, true)
		switch {
		case !ok && err == nil:
			r.record(EventCompensationNone, in.Step, "step has no compensation")
			r.popDone()
		case err != nil:
			r.compensationAttemptFailed(err, !IsPermanent(err))
		default:
			r.record(EventCompensationSucceeded, in.Step, "")
			r.popDone()
		}
		return nil
	}
	c, service, ok, err := r.wf.Command(in.Step, r.dec.State, true)
	if err != nil {
		r.compensationAttemptFailed(err, false)
		return nil
	}
	if !ok {
		r.record(EventCompensationNone, in.Step, "step has no compensation")
		r.popDone()
		return nil
	}
	if err := r.send(c, service, step.Timeout); errors.Is(err, errPaused) {
		return nil
	} else if err != nil {
		r.compensationAttemptFailed(err, false)
		return nil
	}
	r.record(EventCompensationStarted, in.Step, in.Pending.ID)
	r.dec.Records[len(r.dec.Records)-1].MessageID = in.Pending.ID
	return nil
}

// send builds the command envelope, makes it the awaited one and sets its
// timeout timer; while the circuit to service is open it pauses instead
// and returns errPaused.
func (r *run) send(c Cmd, service string, timeout time.Duration) error {
	if r.pauseIfOpen(service) {
		return errPaused
	}
	in := r.inst()
	typeName, payload, err := r.env.Encode(c.Body)
	if err != nil {
		return fmt.Errorf("encode command: %w", err)
	}
	msg := message.Envelope{
		ID: r.env.NewID(), Kind: message.KindCommand, Type: typeName, Source: r.env.Source,
		Destination: service, Key: c.Key, SagaID: in.ID, CorrelationID: in.CorrelationID,
		OccurredAt: r.env.Now, Payload: payload,
		Headers: map[string]string{message.HeaderReplyTo: r.env.Queue},
	}
	in.Pending = &msg
	r.dec.Send = append(r.dec.Send, msg)
	r.setTimer(TimerTimeout, r.env.Now.Add(timeout))
	return nil
}
