package workflows

import (
	"encoding/json"
	"time"

	"github.com/sagaflow/sagaflow/message"
)

// Status is where a saga instance stands.
type Status string

const (
	// StatusRunning: steps are running forward.
	StatusRunning Status = "running"
	// StatusCompensating: a step failed for good, or the saga was cancelled,
	// and the completed steps are being undone in reverse order.
	StatusCompensating Status = "compensating"
	// StatusCompleted: every step succeeded.
	StatusCompleted Status = "completed"
	// StatusCompensated: a step failed and every completed step was undone.
	StatusCompensated Status = "compensated"
	// StatusCancelled: the saga was cancelled and every completed step was undone.
	StatusCancelled Status = "cancelled"
	// StatusNeedsAttention: a compensation failed after its retry budget;
	// an operator must look. Nothing was skipped.
	StatusNeedsAttention Status = "needs_attention"
)

// Terminal reports whether the saga has finished for good.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusCompensated || s == StatusCancelled
}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	switch s {
	case StatusRunning, StatusCompensating, StatusCompleted, StatusCompensated, StatusCancelled, StatusNeedsAttention:
		return true
	}
	return false
}

// TimerPurpose says why a saga set its current timer.
type TimerPurpose string

const (
	// TimerTimeout fires when an awaited reply is late.
	TimerTimeout TimerPurpose = "timeout"
	// TimerRetry fires when a failed attempt may be tried again.
	TimerRetry TimerPurpose = "retry"
	// TimerDelay fires when a Delay step has waited long enough.
	TimerDelay TimerPurpose = "delay"
	// TimerDeadline fires when the saga-level deadline passes.
	TimerDeadline TimerPurpose = "deadline"
)

// Instance is the persisted state of one running saga: everything the
// Machine needs to take the next decision, and nothing else.
type Instance struct {
	ID            string `json:"id"`
	Workflow      string `json:"workflow"`
	Version       int    `json:"version"`
	Status        Status `json:"status"`
	CorrelationID string `json:"correlation_id,omitempty"`
	// Step is the index of the step running forward or being compensated.
	Step int `json:"step"`
	// Attempt is the number of the current step's latest attempt (0: none yet).
	Attempt int `json:"attempt"`
	// Pending is the command whose reply is awaited.
	Pending *message.Envelope `json:"pending,omitempty"`
	// TimerID and TimerPurpose name the saga's one live timer.
	TimerID      string       `json:"timer_id,omitempty"`
	TimerPurpose TimerPurpose `json:"timer_purpose,omitempty"`
	// TimerDue is when the live timer is due; Resume sets it again from this.
	TimerDue time.Time `json:"timer_due,omitzero"`
	// Uncertain is set when an attempt of the current forward step timed
	// out: the participant may have applied it, so the step is compensated
	// (if it can be) when it later fails for good or the saga is cancelled.
	Uncertain bool `json:"uncertain,omitempty"`
	// Done lists the forward steps to compensate, in the order they were done.
	Done []int `json:"done,omitempty"`
	// Cancelled is set when an operator cancelled the saga.
	Cancelled bool `json:"cancelled,omitempty"`
	// Wait is what the current step waits for (a signal or an event).
	Wait *Wait `json:"wait,omitempty"`
	// Branches are the branches of the running Parallel step, each with
	// its own command in flight, attempt and timer.
	Branches []BranchState `json:"branches,omitempty"`
	// DeadlineTimerID and DeadlineDue name the saga-level deadline timer.
	DeadlineTimerID string    `json:"deadline_timer_id,omitempty"`
	DeadlineDue     time.Time `json:"deadline_due,omitzero"`
	// Parent is set on a child saga: where it reports its end.
	Parent *ParentRef `json:"parent,omitempty"`
	// Inbox holds signals and events that came before a step waited for
	// them (at most MaxInbox, oldest dropped first, each recorded).
	Inbox []Received `json:"inbox,omitempty"`
	// Error says why the saga is compensating or needs attention.
	Error     string          `json:"error,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	State     json.RawMessage `json:"state,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// Record is one thing that happened to a saga, kept in its history.
type Record struct {
	Event   string `json:"event"`
	Step    string `json:"step,omitempty"`
	Attempt int    `json:"attempt,omitempty"`
	Detail  string `json:"detail,omitempty"`
	// MessageID is the message the record is about: the command a
	// step.started or compensation.started sent, or the reply (or signal)
	// the record's transition handled.
	MessageID string    `json:"message_id,omitempty"`
	At        time.Time `json:"at"`
}

// History event names.
const (
	EventStarted               = "saga.started"
	EventCompleted             = "saga.completed"
	EventCompensated           = "saga.compensated"
	EventCancelled             = "saga.cancelled"
	EventCancelRequested       = "saga.cancel_requested"
	EventTimerRearmed          = "saga.timer_rearmed"
	EventNeedsAttention        = "saga.needs_attention"
	EventStepStarted           = "step.started"
	EventStepSucceeded         = "step.succeeded"
	EventStepRetryScheduled    = "step.retry_scheduled"
	EventStepFailed            = "step.failed"
	EventCompensationStarted   = "compensation.started"
	EventCompensationSucceeded = "compensation.succeeded"
	EventCompensationNone      = "compensation.none"
	EventCompensationRetry     = "compensation.retry_scheduled"
)

// TimerSpec is a durable timer the saga wants set.
type TimerSpec struct {
	ID      string
	DueAt   time.Time
	Message message.Envelope
}

// Decision is what the Machine decided: the next instance, what happened,
// the messages to send and the timers to set or cancel. The caller persists
// Instance, Records, Send and Timers in one commit.
type Decision struct {
	Instance Instance
	// State is the decoded state matching Instance.State, for callers that
	// cache it.
	State        any
	Records      []Record
	Send         []message.Envelope
	Timers       []TimerSpec
	CancelTimers []string
}

// Changed reports whether the decision changes the instance and so must be
// committed. A decision can send without changing (a resumed saga re-sends
// the command it awaits).
func (d Decision) Changed() bool { return len(d.Records) > 0 }

// Control messages the engine sends to saga instances on the saga queue.
const (
	// TypeTimerFired is delivered when a saga's timer is due.
	TypeTimerFired = "sagaflow.SagaTimerFired.v1"
	// TypeResume makes a saga take its next step (after start or restart).
	TypeResume = "sagaflow.SagaResume.v1"
	// TypeCancel asks a saga to stop and compensate.
	TypeCancel = "sagaflow.SagaCancel.v1"
)

// TimerFired is the payload of TypeTimerFired.
type TimerFired struct {
	TimerID string `json:"timer_id"`
}

// ResumeSaga is the payload of TypeResume.
type ResumeSaga struct{}

// CancelSaga is the payload of TypeCancel.
type CancelSaga struct {
	Reason string `json:"reason,omitempty"`
}

// RegisterMessages registers the saga control messages in r.
func RegisterMessages(r *message.Registry) error {
	if err := message.Register[TimerFired](r, TypeTimerFired); err != nil {
		return err
	}
	if err := message.Register[ResumeSaga](r, TypeResume); err != nil {
		return err
	}
	if err := message.Register[CancelSaga](r, TypeCancel); err != nil {
		return err
	}
	if err := registerOperatorMessages(r); err != nil {
		return err
	}
	return registerKindMessages(r)
}

// Wait is what a waiting step waits for.
type Wait struct {
	// Kind is KindSignal or KindEvent.
	Kind StepKind `json:"kind"`
	// Name is the signal's name or the event's type.
	Name string `json:"name"`
}

// BranchStatus is where one branch of a Parallel step stands.
type BranchStatus string

const (
	// BranchRunning: the branch's command is in flight or waits for a retry.
	BranchRunning BranchStatus = "running"
	// BranchSucceeded: the branch's reply came and was applied.
	BranchSucceeded BranchStatus = "succeeded"
	// BranchFailed: the branch failed for good (first-wins only; under
	// All a failure fails the step at once).
	BranchFailed BranchStatus = "failed"
	// BranchCompensating: a first-wins loser whose compensation is in
	// flight or waits for a retry.
	BranchCompensating BranchStatus = "compensating"
	// BranchSettled: a first-wins loser with nothing left to do.
	BranchSettled BranchStatus = "settled"
)

// BranchState is the live state of one branch of a running Parallel step.
type BranchState struct {
	// Step is the branch's step index.
	Step   int          `json:"step"`
	Status BranchStatus `json:"status"`
	// Attempt counts the attempts of the branch's command (or, when
	// compensating, of its compensation).
	Attempt int `json:"attempt,omitempty"`
	// Pending is the branch's command (or compensation) in flight.
	Pending *message.Envelope `json:"pending,omitempty"`
	// TimerID, TimerPurpose and TimerDue name the branch's live timer.
	TimerID      string       `json:"timer_id,omitempty"`
	TimerPurpose TimerPurpose `json:"timer_purpose,omitempty"`
	TimerDue     time.Time    `json:"timer_due,omitzero"`
	// Uncertain: an attempt timed out, so the branch may have been applied.
	Uncertain bool `json:"uncertain,omitempty"`
}

// inFlight reports whether the branch still has work to settle.
func (b BranchState) inFlight() bool {
	return b.Status == BranchRunning || b.Status == BranchCompensating
}

// ParentRef ties a child saga to the parent step that waits for it.
type ParentRef struct {
	// ID is the parent saga's ID.
	ID string `json:"id"`
	// ReplyTo is the ID of the parent's latest message to the child (its
	// start, or a request to compensate): the child's end answers it.
	ReplyTo string `json:"reply_to"`
}

// Received is a signal or event kept until a step waits for it.
type Received struct {
	Kind      StepKind        `json:"kind"`
	Name      string          `json:"name"`
	MessageID string          `json:"message_id"`
	Payload   json.RawMessage `json:"payload,omitempty"`
}

// MaxInbox bounds Instance.Inbox.
const MaxInbox = 16

// History event names of the step kinds beyond command and local.
const (
	EventStepWaiting      = "step.waiting"
	EventStepAbandoned    = "step.abandoned"
	EventBranchTaken      = "step.branch_taken"
	EventSignalBuffered   = "saga.signal_buffered"
	EventEventReceived    = "saga.event_received"
	EventEventBuffered    = "saga.event_buffered"
	EventEventUnmatched   = "saga.event_unmatched"
	EventInboxDropped     = "saga.inbox_dropped"
	EventDeadlinePassed   = "saga.deadline_passed"
	EventCompensateAsked  = "saga.compensate_requested"
	EventChildEndReported = "saga.end_reported"
)

// Control messages of child sagas and routed events.
const (
	// TypeStartChild starts a child saga (sent by its parent).
	TypeStartChild = "sagaflow.SagaStartChild.v1"
	// TypeCompensate asks a child saga to undo itself: a running one is
	// cancelled, a completed one compensated.
	TypeCompensate = "sagaflow.SagaCompensate.v1"
	// TypeChildEnded is the reply a child sends its parent when it ends.
	TypeChildEnded = "sagaflow.SagaChildEnded.v1"
	// TypeEvent carries an event the engine routed to a saga.
	TypeEvent = "sagaflow.SagaEvent.v1"
)

// StartChild is the payload of TypeStartChild.
type StartChild struct {
	Workflow string          `json:"workflow"`
	Input    json.RawMessage `json:"input,omitempty"`
	ParentID string          `json:"parent_id"`
}

// CompensateSaga is the payload of TypeCompensate.
type CompensateSaga struct {
	Reason string `json:"reason,omitempty"`
}

// ChildEnded is the payload of TypeChildEnded.
type ChildEnded struct {
	SagaID string          `json:"saga_id"`
	Status Status          `json:"status"`
	Error  string          `json:"error,omitempty"`
	State  json.RawMessage `json:"state,omitempty"`
}

// RoutedEvent is the payload of TypeEvent: the event as published.
type RoutedEvent struct {
	Event message.Envelope `json:"event"`
}

func registerKindMessages(r *message.Registry) error {
	if err := message.Register[StartChild](r, TypeStartChild); err != nil {
		return err
	}
	if err := message.Register[CompensateSaga](r, TypeCompensate); err != nil {
		return err
	}
	if err := message.Register[ChildEnded](r, TypeChildEnded); err != nil {
		return err
	}
	return message.Register[RoutedEvent](r, TypeEvent)
}
