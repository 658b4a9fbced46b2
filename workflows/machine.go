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
// running but takes no step: the caller takes the first step with Resume,
// at once (the engine does so for a first command step, committing both
// transitions as one) or after persisting it (delivering a Resume to the
// saga's actor). A workflow with a deadline gets its deadline timer here.
func Start(wf Workflow, env Env, id, correlationID string, input []byte) (Decision, error) {
	return start(wf, env, id, correlationID, input, nil)
}

// StartAsChild is Start for a child saga: parent says where the child
// reports its end (a TypeChildEnded reply).
func StartAsChild(wf Workflow, env Env, id, correlationID string, input []byte, parent ParentRef) (Decision, error) {
	return start(wf, env, id, correlationID, input, &parent)
}

func start(wf Workflow, env Env, id, correlationID string, input []byte, parent *ParentRef) (Decision, error) {
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
		CreatedAt: env.Now, UpdatedAt: env.Now, Parent: parent,
	}
	r := &run{wf: wf, env: env, steps: stepsOf(wf), dec: Decision{Instance: inst, State: state, Records: []Record{{Event: EventStarted, At: env.Now}}}}
	if d := wf.DeadlineAfter(); d > 0 {
		r.setTimer(TimerDeadline, env.Now.Add(d), r.deadlineFlight())
	}
	return r.dec, nil
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
	// The caller's instance is never written: copy what a transition
	// changes in place.
	inst.Done = append([]int(nil), inst.Done...)
	if inst.Branches != nil {
		inst.Branches = append([]BranchState(nil), inst.Branches...)
	}
	if inst.Inbox != nil {
		inst.Inbox = append([]Received(nil), inst.Inbox...)
	}
	if inst.Parent != nil {
		p := *inst.Parent
		inst.Parent = &p
	}
	return &run{ctx: ctx, wf: wf, env: env, steps: stepsOf(wf), dec: Decision{Instance: inst, State: state}}, nil
}

func (r *run) inst() *Instance { return &r.dec.Instance }

func (r *run) record(event string, step int, detail string) {
	r.recordAttempt(event, step, r.inst().Attempt, detail)
}

func (r *run) recordAttempt(event string, step, attempt int, detail string) {
	rec := Record{Event: event, Attempt: attempt, Detail: detail, At: r.env.Now}
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

// flight is one unit of work that can be in flight: the current step
// (the instance's own fields), one branch of a Parallel step, or the
// deadline (a timer only). Every command and timer goes through one.
type flight struct {
	step      int
	branch    int // -1: not a branch
	pending   **message.Envelope
	timerID   *string
	purpose   *TimerPurpose
	due       *time.Time
	attempt   *int
	uncertain *bool
}

func (r *run) mainFlight() flight {
	in := r.inst()
	return flight{step: in.Step, branch: -1, pending: &in.Pending, timerID: &in.TimerID, purpose: &in.TimerPurpose,
		due: &in.TimerDue, attempt: &in.Attempt, uncertain: &in.Uncertain}
}

func (r *run) branchFlight(k int) flight {
	b := &r.inst().Branches[k]
	return flight{step: b.Step, branch: k, pending: &b.Pending, timerID: &b.TimerID, purpose: &b.TimerPurpose,
		due: &b.TimerDue, attempt: &b.Attempt, uncertain: &b.Uncertain}
}

func (r *run) deadlineFlight() flight {
	in := r.inst()
	var purpose TimerPurpose
	return flight{step: -1, branch: -1, timerID: &in.DeadlineTimerID, purpose: &purpose, due: &in.DeadlineDue}
}

// waiting reports whether the saga waits for something: a reply, a timer,
// a signal or event, or the branches of a Parallel step.
func (r *run) waiting() bool {
	in := r.inst()
	return in.Pending != nil || in.TimerID != "" || in.Wait != nil || len(in.Branches) > 0
}

// Resume makes the instance take its next step: after it was created, or
// after an engine restart. A saga awaiting replies sends its commands
// again with the same message IDs (the participants deduplicate them),
// and a saga with live timers sets them again, since their firing may
// have been lost; both are recorded, so the caller commits them.
func Resume(ctx context.Context, wf Workflow, env Env, inst Instance, state any) (Decision, error) {
	if inst.Status.Terminal() || inst.Status == StatusNeedsAttention {
		return Decision{Instance: inst, State: state}, nil
	}
	r, err := newRun(ctx, wf, env, inst, state)
	if err != nil {
		return Decision{}, err
	}
	in := r.inst()
	// A timer's firing may have been published and lost with the process
	// (the timer service deletes a timer once it published it). Setting
	// it again under the same ID is harmless: whichever firing comes
	// second finds the timer no longer live.
	if in.TimerID != "" {
		r.rearm(r.mainFlight(), in.Step, in.TimerPurpose)
	}
	for k := range in.Branches {
		if in.Branches[k].TimerID != "" {
			r.rearm(r.branchFlight(k), in.Branches[k].Step, in.Branches[k].TimerPurpose)
		}
	}
	// The deadline timer was set with the saga's first commit; it needs
	// setting again only once the saga has run (its firing may have been
	// lost since).
	started := in.Step > 0 || in.Attempt > 0 || len(in.Done) > 0 || in.Pending != nil || r.waiting()
	if in.DeadlineTimerID != "" && started {
		r.rearm(r.deadlineFlight(), -1, TimerDeadline)
	}
	if p := in.Pending; p != nil {
		r.dec.Send = append(r.dec.Send, p.Clone())
	}
	for _, b := range in.Branches {
		if b.Pending != nil {
			r.dec.Send = append(r.dec.Send, b.Pending.Clone())
		}
	}
	if !r.waiting() {
		if err := r.advance(); err != nil {
			return Decision{}, err
		}
	}
	return r.finish()
}

func (r *run) rearm(f flight, step int, purpose TimerPurpose) {
	r.armTimer(*f.timerID, purpose, *f.due, f)
	r.record(EventTimerRearmed, step, fmt.Sprintf("%s timer due %s", purpose, f.due.Format(time.RFC3339Nano)))
}

// OnReply applies the reply to an awaited command: the current step's or
// a parallel branch's. body is the decoded payload (a *message.Failure
// for a failure reply, a *ChildEnded from a child saga). A reply to
// anything else returns ErrStale.
func OnReply(ctx context.Context, wf Workflow, env Env, inst Instance, state any, reply message.Envelope, body any) (Decision, error) {
	if inst.Status.Terminal() {
		return Decision{}, fmt.Errorf("saga %s: reply %s: %w", inst.ID, reply.ID, ErrTerminal)
	}
	branch := -1
	if inst.Pending == nil || reply.CausationID != inst.Pending.ID {
		for k, b := range inst.Branches {
			if b.Pending != nil && b.Pending.ID == reply.CausationID {
				branch = k
			}
		}
		if branch < 0 {
			return Decision{}, fmt.Errorf("saga %s: reply %s to command %q: %w", inst.ID, reply.ID, reply.CausationID, ErrStale)
		}
	}
	r, err := newRun(ctx, wf, env, inst, state)
	if err != nil {
		return Decision{}, err
	}
	if branch >= 0 {
		r.branchReply(branch, body)
	} else {
		r.mainReply(body)
	}
	r.stampMessage(0, reply.ID)
	if err := r.advance(); err != nil {
		return Decision{}, err
	}
	return r.finish()
}

func (r *run) mainReply(body any) {
	in := r.inst()
	in.Pending = nil
	r.clearTimer(r.mainFlight())
	compensating := in.Status == StatusCompensating
	body = r.childOutcome(in.Step, body, compensating)
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
		r.stepSucceeded()
	}
}

// stepSucceeded records the current step's success and moves on.
func (r *run) stepSucceeded() {
	in := r.inst()
	r.record(EventStepSucceeded, in.Step, "")
	in.Done = append(in.Done, in.Step)
	in.Step = r.steps[in.Step].Next
	in.Attempt = 0
	in.Uncertain = false
}

// OnTimer handles the firing of timer timerID: a late reply (timeout),
// the end of a retry delay or of a Delay step, a wait that timed out, or
// the saga's deadline. A timer that is no longer live returns ErrStale.
func OnTimer(ctx context.Context, wf Workflow, env Env, inst Instance, state any, timerID string) (Decision, error) {
	branch := -1
	if timerID == "" {
		return Decision{}, fmt.Errorf("saga %s: timer %q: %w", inst.ID, timerID, ErrStale)
	}
	if inst.TimerID != timerID && inst.DeadlineTimerID != timerID {
		for k, b := range inst.Branches {
			if b.TimerID == timerID {
				branch = k
			}
		}
		if branch < 0 {
			return Decision{}, fmt.Errorf("saga %s: timer %q: %w", inst.ID, timerID, ErrStale)
		}
	}
	r, err := newRun(ctx, wf, env, inst, state)
	if err != nil {
		return Decision{}, err
	}
	in := r.inst()
	switch {
	case branch >= 0:
		r.branchTimer(branch)
	case in.DeadlineTimerID == timerID:
		r.deadlinePassed()
	default:
		r.mainTimer()
	}
	if err := r.advance(); err != nil {
		return Decision{}, err
	}
	return r.finish()
}

func (r *run) mainTimer() {
	in := r.inst()
	purpose := in.TimerPurpose
	in.TimerID, in.TimerPurpose, in.TimerDue = "", "", time.Time{}
	switch {
	case purpose == TimerTimeout && in.Pending != nil:
		in.Pending = nil
		timeout := fmt.Errorf("no reply within %v", r.steps[in.Step].Timeout)
		if in.Status == StatusCompensating {
			r.compensationAttemptFailed(timeout, true)
		} else {
			in.Uncertain = true
			r.attemptFailed(timeout, true, true)
		}
	case purpose == TimerTimeout && in.Wait != nil:
		w := in.Wait
		in.Wait = nil
		r.stepFailed(fmt.Errorf("no %s %q within %v", w.Kind, w.Name, r.steps[in.Step].Timeout), false)
	case purpose == TimerDelay && in.Status == StatusRunning:
		r.stepSucceeded()
	}
}

// Cancel stops a running saga and compensates its completed steps in
// reverse order. Whatever is in flight is abandoned: a step whose command
// is in flight, or one of whose attempts timed out, is compensated too,
// since it may have been applied (compensations must tolerate having
// nothing to undo), and so are the branches of a Parallel step in flight
// and a child saga being waited for; a wait or a delay just stops. Late
// replies to abandoned commands are stale. Cancelling a compensating saga
// marks it cancelled.
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
		r.abort(reason)
	}
	if err := r.advance(); err != nil {
		return Decision{}, err
	}
	return r.finish()
}

// abort abandons whatever the running saga has in flight and starts
// compensating, with reason as the saga's error.
func (r *run) abort(reason string) {
	in := r.inst()
	if in.Step < len(r.steps) && (in.Pending != nil || in.Uncertain) && r.steps[in.Step].Compensable {
		in.Done = append(in.Done, in.Step)
	}
	in.Pending = nil
	r.clearTimer(r.mainFlight())
	if in.Wait != nil {
		r.record(EventStepAbandoned, in.Step, fmt.Sprintf("waiting for %s %q", in.Wait.Kind, in.Wait.Name))
		in.Wait = nil
	}
	r.abandonBranches("saga stopped")
	in.Error = reason
	r.beginCompensation()
}

// clearTimer cancels f's live timer, if any.
func (r *run) clearTimer(f flight) {
	if *f.timerID != "" {
		r.dec.CancelTimers = append(r.dec.CancelTimers, *f.timerID)
	}
	*f.timerID, *f.purpose, *f.due = "", "", time.Time{}
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
	in.Wait = nil
	r.clearTimer(r.deadlineFlight())
}

// attemptFailed handles a failed forward attempt: retry it if the policy
// allows, otherwise fail the step. unknownOutcome is true when the
// participant may have applied the command (a timeout).
func (r *run) attemptFailed(err error, retryable, unknownOutcome bool) {
	in := r.inst()
	step := r.steps[in.Step]
	if retryable && in.Attempt < step.Retry.attempts() {
		r.scheduleRetry(step.Retry, err, EventStepRetryScheduled, r.mainFlight())
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
		r.scheduleRetry(step.CompensationRetry, err, EventCompensationRetry, r.mainFlight())
		return
	}
	r.park(fmt.Sprintf("compensation of step %q failed after %d attempts: %v", step.Name, in.Attempt, err), in.Step)
}

// park stops the saga for an operator.
func (r *run) park(why string, step int) {
	in := r.inst()
	in.Status = StatusNeedsAttention
	in.Error = why
	r.record(EventNeedsAttention, step, in.Error)
}

func (r *run) scheduleRetry(p RetryPolicy, cause error, event string, f flight) {
	delay := p.Delay(*f.attempt, r.env.Rand())
	r.setTimer(TimerRetry, r.env.Now.Add(delay), f)
	r.recordAttempt(event, f.step, *f.attempt, fmt.Sprintf("%v; next attempt in %v", cause, delay.Round(time.Millisecond)))
}

func (r *run) setTimer(purpose TimerPurpose, due time.Time, f flight) {
	r.armTimer(r.env.NewID(), purpose, due, f)
}

// armTimer makes timer id with purpose, due at due, f's live timer.
func (r *run) armTimer(id string, purpose TimerPurpose, due time.Time, f flight) {
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
	*f.timerID, *f.purpose, *f.due = id, purpose, due
}

// maxAdvance bounds the steps one transition may take: each step at most
// twice (forward and compensation), plus the final one.
func (r *run) maxAdvance() int { return 2*len(r.steps) + 2 }

// advance takes steps until the saga waits (for a reply, a timer, a
// signal or event, or parallel branches) or ends.
func (r *run) advance() error {
	in := r.inst()
	for range r.maxAdvance() {
		if r.waiting() {
			return nil
		}
		switch in.Status {
		case StatusRunning:
			if in.Step >= len(r.steps) {
				in.Status = StatusCompleted
				r.clearTimer(r.deadlineFlight())
				r.record(EventCompleted, -1, "")
				return r.reportEnd()
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
				return r.reportEnd()
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

// forward runs, sends or starts the current step's next attempt.
func (r *run) forward() error {
	in := r.inst()
	step := r.steps[in.Step]
	switch step.Kind {
	case KindLocal:
		in.Attempt++
		_, err := r.wf.RunLocal(r.ctx, in.Step, r.dec.State, false)
		if err != nil {
			r.attemptFailed(err, !IsPermanent(err), false)
			return nil
		}
		r.stepSucceeded()
	case KindCommand, KindChild:
		in.Attempt++
		var c Cmd
		var service string
		var err error
		if step.Kind == KindChild {
			c, err = r.childCommand(in.Step, false)
			service = r.env.Queue
		} else {
			c, service, _, err = r.wf.Command(in.Step, r.dec.State, false)
		}
		if err != nil {
			r.stepFailed(err, false)
			return nil
		}
		if err := r.send(c, service, step.Timeout, r.mainFlight()); errors.Is(err, errPaused) {
			return nil
		} else if err != nil {
			r.stepFailed(err, false)
			return nil
		}
		r.record(EventStepStarted, in.Step, in.Pending.ID)
		r.dec.Records[len(r.dec.Records)-1].MessageID = in.Pending.ID
	case KindSignal, KindEvent:
		r.startWait()
	case KindDelay:
		in.Attempt++
		r.setTimer(TimerDelay, r.env.Now.Add(step.Delay), r.mainFlight())
		r.record(EventStepWaiting, in.Step, fmt.Sprintf("delay %v", step.Delay))
	case KindIf:
		ok, err := r.wf.Evaluate(in.Step, r.dec.State)
		if err != nil {
			r.stepFailed(err, false)
			return nil
		}
		branch, next := "then", step.Then
		if !ok {
			branch, next = "else", step.Else
		}
		r.record(EventBranchTaken, in.Step, branch)
		in.Step, in.Attempt = next, 0
	case KindParallel:
		r.startParallel()
	default:
		return fmt.Errorf("saga %s: step %q has unknown kind %q", in.ID, step.Name, step.Kind)
	}
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
	if step.Kind != KindCommand && step.Kind != KindChild {
		r.record(EventCompensationNone, in.Step, "step has no compensation")
		r.popDone()
		return nil
	}
	var c Cmd
	var service string
	var ok bool
	var err error
	if step.Kind == KindChild {
		c, err = r.childCommand(in.Step, true)
		service, ok = r.env.Queue, true
	} else {
		c, service, ok, err = r.wf.Command(in.Step, r.dec.State, true)
	}
	if err != nil {
		r.compensationAttemptFailed(err, false)
		return nil
	}
	if !ok {
		r.record(EventCompensationNone, in.Step, "step has no compensation")
		r.popDone()
		return nil
	}
	if err := r.send(c, service, step.Timeout, r.mainFlight()); errors.Is(err, errPaused) {
		return nil
	} else if err != nil {
		r.compensationAttemptFailed(err, false)
		return nil
	}
	r.record(EventCompensationStarted, in.Step, in.Pending.ID)
	r.dec.Records[len(r.dec.Records)-1].MessageID = in.Pending.ID
	return nil
}

// send is the one way a command leaves the saga: it builds the command
// envelope, makes it f's awaited command and sets f's timeout timer.
// While the circuit to service is open it pauses f instead and returns
// errPaused (commands to the saga queue itself, for child sagas, are
// never held back).
func (r *run) send(c Cmd, service string, timeout time.Duration, f flight) error {
	if service != r.env.Queue && r.pauseIfOpen(service, f) {
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
	*f.pending = &msg
	r.dec.Send = append(r.dec.Send, msg)
	r.setTimer(TimerTimeout, r.env.Now.Add(timeout), f)
	return nil
}
