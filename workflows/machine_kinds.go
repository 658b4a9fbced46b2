package workflows

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/sagaflow/sagaflow/message"
)

// This file holds the Machine's handling of the step kinds beyond command
// and local: parallel branches, waits for signals and events, child
// sagas, and the saga-level deadline.

// ErrNotChild: a request to compensate a saga that no parent started.
var ErrNotChild = errors.New("saga is not a child saga")

// ChildID is the ID of the child saga that step of saga parentID starts:
// the same on every attempt and in every process, so a resent start
// starts the child once.
func ChildID(parentID, step string) string {
	sum := sha256.Sum256([]byte(parentID + "\x00" + step))
	return "child-" + hex.EncodeToString(sum[:16])
}

// childCommand builds the start (or, when compensate, the compensation
// request) of child step i.
func (r *run) childCommand(i int, compensate bool) (Cmd, error) {
	in := r.inst()
	key := ChildID(in.ID, r.steps[i].Name)
	if compensate {
		return Cmd{Key: key, Body: &CompensateSaga{Reason: fmt.Sprintf("parent saga %s compensates step %q", in.ID, r.steps[i].Name)}}, nil
	}
	wf, input, err := r.wf.ChildInput(i, r.dec.State)
	if err != nil {
		return Cmd{}, err
	}
	return Cmd{Key: key, Body: &StartChild{Workflow: wf, Input: input, ParentID: in.ID}}, nil
}

// childOutcome turns a child saga's end into the reply the step expects:
// forward, a completed child is a success and any other end a failure;
// compensating, a child that was undone is a success.
func (r *run) childOutcome(step int, body any, compensating bool) any {
	end, ok := body.(*ChildEnded)
	if !ok || step < 0 || step >= len(r.steps) || r.steps[step].Kind != KindChild {
		return body
	}
	if compensating {
		if end.Status == StatusCompensated || end.Status == StatusCancelled {
			return end
		}
		return &message.Failure{Reason: fmt.Sprintf("child saga %s is %s, not undone", end.SagaID, end.Status)}
	}
	if end.Status == StatusCompleted {
		return end
	}
	return &message.Failure{Reason: fmt.Sprintf("child saga %s ended %s: %s", end.SagaID, end.Status, end.Error)}
}

// reportEnd tells the parent of a child saga that the child ended.
func (r *run) reportEnd() error {
	in := r.inst()
	if in.Parent == nil {
		return nil
	}
	state, err := r.wf.EncodeState(r.dec.State)
	if err != nil {
		return err
	}
	typeName, payload, err := r.env.Encode(&ChildEnded{SagaID: in.ID, Status: in.Status, Error: in.Error, State: state})
	if err != nil {
		return fmt.Errorf("saga %s: encode end report: %w", in.ID, err)
	}
	r.dec.Send = append(r.dec.Send, message.Envelope{
		ID: r.env.NewID(), Kind: message.KindReply, Type: typeName, Source: r.env.Source,
		Destination: r.env.Queue, Key: in.Parent.ID, SagaID: in.Parent.ID, CorrelationID: in.CorrelationID,
		CausationID: in.Parent.ReplyTo, OccurredAt: r.env.Now, Payload: payload,
	})
	r.record(EventChildEndReported, -1, fmt.Sprintf("%s to parent saga %s", in.Status, in.Parent.ID))
	return nil
}

// CompensateRequested handles a parent's request (message msgID) that
// this child saga undo itself: a running child is cancelled, a completed
// one compensates its steps in reverse order, one already undone reports
// its end again. The child's end answers msgID.
func CompensateRequested(ctx context.Context, wf Workflow, env Env, inst Instance, state any, msgID, reason string) (Decision, error) {
	if inst.Parent == nil {
		return Decision{}, fmt.Errorf("saga %s: compensate request %s: %w", inst.ID, msgID, ErrNotChild)
	}
	r, err := newRun(ctx, wf, env, inst, state)
	if err != nil {
		return Decision{}, err
	}
	in := r.inst()
	in.Parent.ReplyTo = msgID
	if reason == "" {
		reason = "compensation requested by the parent saga"
	}
	r.record(EventCompensateAsked, -1, reason)
	switch in.Status {
	case StatusRunning:
		in.Cancelled = true
		r.abort(reason)
	case StatusCompensating:
		in.Cancelled = true
	case StatusCompleted:
		in.Cancelled = true
		in.Error = reason
		r.beginCompensation()
	case StatusCompensated, StatusCancelled:
		if err := r.reportEnd(); err != nil {
			return Decision{}, err
		}
	}
	if err := r.advance(); err != nil {
		return Decision{}, err
	}
	r.stampMessage(0, msgID)
	return r.finish()
}

// --- waits -----------------------------------------------------------------

// startWait makes the current step wait for its signal or event, taking
// one from the inbox when it came early.
func (r *run) startWait() {
	in := r.inst()
	step := r.steps[in.Step]
	in.Attempt++
	name := step.Signal
	if step.Kind == KindEvent {
		name = step.Event
	}
	in.Wait = &Wait{Kind: step.Kind, Name: name}
	detail := fmt.Sprintf("%s %q", step.Kind, name)
	if step.Timeout > 0 {
		r.setTimer(TimerTimeout, r.env.Now.Add(step.Timeout), r.mainFlight())
		detail += fmt.Sprintf(" for at most %v", step.Timeout)
	}
	r.record(EventStepWaiting, in.Step, detail)
	for k := 0; k < len(in.Inbox) && in.Wait != nil; {
		m := in.Inbox[k]
		if m.Kind != step.Kind || m.Name != name {
			k++
			continue
		}
		in.Inbox = append(in.Inbox[:k:k], in.Inbox[k+1:]...)
		r.receive(m.Payload, m.MessageID)
	}
	if len(in.Inbox) == 0 {
		in.Inbox = nil
	}
}

// receive offers payload to the waiting step.
func (r *run) receive(payload []byte, msgID string) {
	in := r.inst()
	from := len(r.dec.Records)
	matched, err := r.wf.Receive(in.Step, r.dec.State, payload)
	switch {
	case err != nil:
		in.Wait = nil
		r.clearTimer(r.mainFlight())
		r.stepFailed(err, false)
	case !matched:
		r.record(EventEventUnmatched, in.Step, "the step's Match refused it")
	default:
		in.Wait = nil
		r.clearTimer(r.mainFlight())
		r.stepSucceeded()
	}
	r.stampMessage(from, msgID)
}

// waitsLater reports whether a step from the current one on waits for
// kind name: a message for it is kept until that step runs.
func (r *run) waitsLater(kind StepKind, name string) bool {
	for i := r.inst().Step; i >= 0 && i < len(r.steps); i++ {
		s := r.steps[i]
		if s.Kind == kind && (kind == KindSignal && s.Signal == name || kind == KindEvent && s.Event == name) {
			return true
		}
	}
	return false
}

// keep puts an early signal or event in the bounded inbox.
func (r *run) keep(m Received, event string) {
	in := r.inst()
	if len(in.Inbox) >= MaxInbox {
		r.record(EventInboxDropped, -1, fmt.Sprintf("%s %q (message %s): inbox full", in.Inbox[0].Kind, in.Inbox[0].Name, in.Inbox[0].MessageID))
		in.Inbox = append([]Received(nil), in.Inbox[1:]...)
	}
	in.Inbox = append(in.Inbox, m)
	r.record(event, -1, m.Name)
}

// onSignal delivers signal sig to the waiting step, or keeps it for a
// later step that waits for it, or only records it.
func (r *run) onSignal(msgID string, sig SignalSaga) {
	in := r.inst()
	if in.Status == StatusRunning && in.Wait != nil && in.Wait.Kind == KindSignal && in.Wait.Name == sig.Name {
		r.record(EventSignalReceived, in.Step, sig.Name)
		r.receive(sig.Payload, msgID)
		return
	}
	r.record(EventSignalReceived, -1, sig.Name)
	if in.Status == StatusRunning && r.waitsLater(KindSignal, sig.Name) {
		r.keep(Received{Kind: KindSignal, Name: sig.Name, MessageID: msgID, Payload: sig.Payload}, EventSignalBuffered)
	}
}

// OnEvent delivers event ev (routed to the saga in message msgID) to the
// step waiting for its type. An event that comes before its step waits
// is kept in the inbox and recorded; one that no step of the saga waits
// for any more (the step already passed, or the saga is compensating)
// returns ErrStale, to be parked with the reason, never applied.
func OnEvent(ctx context.Context, wf Workflow, env Env, inst Instance, state any, msgID string, ev message.Envelope) (Decision, error) {
	if inst.Status.Terminal() {
		return Decision{}, fmt.Errorf("saga %s is %s: event %s (%s): %w", inst.ID, inst.Status, ev.ID, ev.Type, ErrTerminal)
	}
	r, err := newRun(ctx, wf, env, inst, state)
	if err != nil {
		return Decision{}, err
	}
	in := r.inst()
	switch {
	case in.Status == StatusRunning && in.Wait != nil && in.Wait.Kind == KindEvent && in.Wait.Name == ev.Type:
		r.record(EventEventReceived, in.Step, ev.Type)
		r.receive(ev.Payload, msgID)
	case in.Status == StatusRunning && r.waitsLater(KindEvent, ev.Type):
		r.keep(Received{Kind: KindEvent, Name: ev.Type, MessageID: msgID, Payload: ev.Payload}, EventEventBuffered)
	default:
		return Decision{}, fmt.Errorf("saga %s (%s): no step waits for event %s of type %s: %w", inst.ID, inst.Status, ev.ID, ev.Type, ErrStale)
	}
	r.stampMessage(0, msgID)
	if err := r.advance(); err != nil {
		return Decision{}, err
	}
	return r.finish()
}

// --- deadline --------------------------------------------------------------

// deadlinePassed abandons a running saga and compensates it.
func (r *run) deadlinePassed() {
	in := r.inst()
	due := in.DeadlineDue
	in.DeadlineTimerID, in.DeadlineDue = "", time.Time{}
	if in.Status != StatusRunning {
		return
	}
	why := fmt.Sprintf("deadline of %v passed (due %s)", r.wf.DeadlineAfter(), due.Format(time.RFC3339))
	r.record(EventDeadlinePassed, -1, why)
	r.abort(why)
}

// --- parallel branches -----------------------------------------------------

// startParallel sends the commands of every branch of the current step.
func (r *run) startParallel() {
	in := r.inst()
	step := r.steps[in.Step]
	r.record(EventStepStarted, in.Step, fmt.Sprintf("%d branches, %s", step.BranchCount, step.Mode))
	in.Branches = make([]BranchState, step.BranchCount)
	for k := range in.Branches {
		in.Branches[k] = BranchState{Step: step.BranchFrom + k, Status: BranchRunning}
	}
	for k := 0; k < len(in.Branches); k++ {
		r.branchForward(k)
	}
	r.parallelSettle()
}

func (r *run) branchForward(k int) {
	b := &r.inst().Branches[k]
	b.Attempt++
	c, service, _, err := r.wf.Command(b.Step, r.dec.State, false)
	if err == nil {
		err = r.send(c, service, r.steps[b.Step].Timeout, r.branchFlight(k))
	}
	if errors.Is(err, errPaused) {
		return
	}
	if err != nil {
		r.branchFailed(k, err, false)
		return
	}
	r.recordAttempt(EventStepStarted, b.Step, b.Attempt, b.Pending.ID)
	r.dec.Records[len(r.dec.Records)-1].MessageID = b.Pending.ID
}

func (r *run) branchReply(k int, body any) {
	b := &r.inst().Branches[k]
	b.Pending = nil
	r.clearTimer(r.branchFlight(k))
	f, failed := body.(*message.Failure)
	switch {
	case b.Status == BranchCompensating && failed:
		r.branchCompensationFailed(k, errors.New(f.Reason), f.Retryable)
	case b.Status == BranchCompensating:
		r.recordAttempt(EventCompensationSucceeded, b.Step, b.Attempt, "")
		b.Status = BranchSettled
	case failed:
		r.branchAttemptFailed(k, errors.New(f.Reason), f.Retryable, false)
	default:
		if err := r.wf.ApplyReply(b.Step, r.dec.State, body); err != nil {
			r.branchFailed(k, fmt.Errorf("handle reply: %w", err), true)
		} else {
			r.branchSucceeded(k)
		}
	}
	r.parallelSettle()
}

func (r *run) branchTimer(k int) {
	b := &r.inst().Branches[k]
	purpose := b.TimerPurpose
	b.TimerID, b.TimerPurpose, b.TimerDue = "", "", time.Time{}
	switch {
	case purpose == TimerTimeout && b.Pending != nil:
		b.Pending = nil
		timeout := fmt.Errorf("no reply within %v", r.steps[b.Step].Timeout)
		if b.Status == BranchCompensating {
			r.branchCompensationFailed(k, timeout, true)
		} else {
			b.Uncertain = true
			r.branchAttemptFailed(k, timeout, true, true)
		}
	case purpose == TimerRetry && b.Status == BranchCompensating:
		r.branchCompensateAttempt(k)
	case purpose == TimerRetry && b.Status == BranchRunning:
		r.branchForward(k)
	}
	r.parallelSettle()
}

func (r *run) branchAttemptFailed(k int, err error, retryable, unknownOutcome bool) {
	b := &r.inst().Branches[k]
	step := r.steps[b.Step]
	if retryable && b.Attempt < step.Retry.attempts() {
		r.scheduleRetry(step.Retry, err, EventStepRetryScheduled, r.branchFlight(k))
		return
	}
	r.branchFailed(k, err, unknownOutcome)
}

// branchFailed fails branch k for good. Under All that fails the
// Parallel step: the other branches are abandoned and the saga
// compensates, the branches that succeeded or may have first.
func (r *run) branchFailed(k int, err error, mayBeApplied bool) {
	in := r.inst()
	b := &in.Branches[k]
	r.recordAttempt(EventStepFailed, b.Step, b.Attempt, err.Error())
	b.Status = BranchFailed
	b.Uncertain = b.Uncertain || mayBeApplied
	if r.steps[in.Step].Mode == FirstWins {
		return // parallelSettle fails the step when every branch failed
	}
	// abandonBranches puts the failed branch on Done too when it may
	// have been applied (b.Uncertain).
	r.abandonBranches("a sibling branch failed")
	in.Error = fmt.Sprintf("step %q failed: branch %q failed: %v", r.steps[in.Step].Name, r.steps[b.Step].Name, err)
	in.Branches = nil
	r.beginCompensation()
}

// abandonBranches stops every branch still in flight: its timer is
// cancelled, its late reply will be stale, and it is put on Done to be
// compensated when it may have been applied (or was being compensated).
func (r *run) abandonBranches(why string) {
	in := r.inst()
	for k := range in.Branches {
		b := &in.Branches[k]
		if !b.inFlight() && !(b.Status == BranchFailed && b.Uncertain) {
			continue
		}
		r.clearTimer(r.branchFlight(k))
		mayBeApplied := b.Pending != nil || b.Uncertain || b.Status == BranchCompensating
		b.Pending = nil
		if b.inFlight() {
			r.recordAttempt(EventStepAbandoned, b.Step, b.Attempt, why)
		}
		if mayBeApplied && r.steps[b.Step].Compensable {
			in.Done = append(in.Done, b.Step)
		}
		b.Status = BranchSettled
	}
	in.Branches = nil
}

func (r *run) branchSucceeded(k int) {
	in := r.inst()
	b := &in.Branches[k]
	r.recordAttempt(EventStepSucceeded, b.Step, b.Attempt, "")
	in.Done = append(in.Done, b.Step)
	if next := r.steps[b.Step].Next; next >= 0 {
		// A branch that is a sequence sends its next step; the steps it
		// completed are on Done, to be undone in reverse order.
		b.Step, b.Attempt, b.Uncertain = next, 0, false
		r.branchForward(k)
		return
	}
	b.Status, b.Uncertain = BranchSucceeded, false
	if r.steps[in.Step].Mode != FirstWins {
		return
	}
	for j := range in.Branches {
		if j != k {
			r.loseBranch(j)
		}
	}
}

// loseBranch abandons first-wins branch j after another won, compensating
// it when it may have been applied.
func (r *run) loseBranch(j int) {
	b := &r.inst().Branches[j]
	switch b.Status {
	case BranchRunning:
		r.clearTimer(r.branchFlight(j))
		mayBeApplied := b.Pending != nil || b.Uncertain
		b.Pending = nil
		r.recordAttempt(EventStepAbandoned, b.Step, b.Attempt, "another branch won")
		if mayBeApplied && r.steps[b.Step].Compensable {
			r.branchCompensate(j)
			return
		}
		b.Status = BranchSettled
	case BranchFailed:
		if b.Uncertain && r.steps[b.Step].Compensable {
			r.branchCompensate(j)
			return
		}
		b.Status = BranchSettled
	}
}

func (r *run) branchCompensate(j int) {
	b := &r.inst().Branches[j]
	b.Status, b.Attempt, b.Uncertain = BranchCompensating, 0, false
	r.branchCompensateAttempt(j)
}

func (r *run) branchCompensateAttempt(j int) {
	b := &r.inst().Branches[j]
	b.Attempt++
	c, service, ok, err := r.wf.Command(b.Step, r.dec.State, true)
	if err == nil && !ok {
		r.recordAttempt(EventCompensationNone, b.Step, b.Attempt, "step has no compensation")
		b.Status = BranchSettled
		return
	}
	if err == nil {
		err = r.send(c, service, r.steps[b.Step].Timeout, r.branchFlight(j))
	}
	if errors.Is(err, errPaused) {
		return
	}
	if err != nil {
		r.branchCompensationFailed(j, err, false)
		return
	}
	r.recordAttempt(EventCompensationStarted, b.Step, b.Attempt, b.Pending.ID)
	r.dec.Records[len(r.dec.Records)-1].MessageID = b.Pending.ID
}

// branchCompensationFailed retries a losing branch's compensation, or,
// when its budget is spent, parks the saga with the branch on top of
// Done: an operator's retry compensates it first, then the rest of the
// saga in reverse order.
func (r *run) branchCompensationFailed(j int, err error, retryable bool) {
	in := r.inst()
	b := &in.Branches[j]
	step := r.steps[b.Step]
	if retryable && b.Attempt < step.CompensationRetry.attempts() {
		r.scheduleRetry(step.CompensationRetry, err, EventCompensationRetry, r.branchFlight(j))
		return
	}
	why := fmt.Sprintf("compensation of branch %q failed after %d attempts: %v", step.Name, b.Attempt, err)
	failed := b.Step
	b.Status = BranchSettled
	r.abandonBranches("the saga is parked")
	in.Done = append(in.Done, failed)
	in.Step = failed
	r.clearTimer(r.mainFlight())
	r.park(why, failed)
}

// parallelSettle ends the running Parallel step when its mode says so.
func (r *run) parallelSettle() {
	in := r.inst()
	if len(in.Branches) == 0 || in.Status != StatusRunning {
		return
	}
	step := r.steps[in.Step]
	succeeded, failed, busy := 0, 0, 0
	for _, b := range in.Branches {
		switch {
		case b.Status == BranchSucceeded:
			succeeded++
		case b.Status == BranchFailed:
			failed++
		case b.inFlight():
			busy++
		}
	}
	switch {
	case step.Mode == FirstWins && succeeded == 0 && failed == len(in.Branches):
		for _, b := range in.Branches {
			if b.Uncertain && r.steps[b.Step].Compensable {
				in.Done = append(in.Done, b.Step)
			}
		}
		in.Branches = nil
		in.Error = fmt.Sprintf("step %q failed: every branch failed", step.Name)
		r.record(EventStepFailed, in.Step, "every branch failed")
		r.beginCompensation()
	case step.Mode == FirstWins && succeeded > 0 && busy == 0,
		step.Mode != FirstWins && succeeded == len(in.Branches):
		in.Branches = nil
		r.record(EventStepSucceeded, in.Step, "")
		in.Step, in.Attempt = step.Next, 0
	}
}

// StartedAgain handles a parent's start (message msgID) of a child saga
// that exists already: the parent resent it, or retried the step after a
// timeout. The child's end now answers msgID; a child that has ended
// reports its end again at once. A start from another parent returns
// ErrStale.
func StartedAgain(ctx context.Context, wf Workflow, env Env, inst Instance, state any, msgID, parentID string) (Decision, error) {
	if inst.Parent == nil || inst.Parent.ID != parentID {
		return Decision{}, fmt.Errorf("saga %s: start by parent %q (message %s): %w", inst.ID, parentID, msgID, ErrStale)
	}
	if inst.Parent.ReplyTo == msgID {
		return Decision{Instance: inst, State: state}, nil
	}
	r, err := newRun(ctx, wf, env, inst, state)
	if err != nil {
		return Decision{}, err
	}
	in := r.inst()
	in.Parent.ReplyTo = msgID
	r.record(EventStarted, -1, "started again by the parent: its end answers "+msgID)
	if in.Status.Terminal() {
		if err := r.reportEnd(); err != nil {
			return Decision{}, err
		}
	}
	r.stampMessage(0, msgID)
	return r.finish()
}
