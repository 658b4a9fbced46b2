package workflows

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sagaflow/sagaflow/message"
)

// Control messages an operator sends to a saga through the engine.
const (
	// TypeSignal delivers an external signal to a saga.
	TypeSignal = "sagaflow.SagaSignal.v1"
	// TypeRetry makes a saga that needs attention try its failed
	// compensation again.
	TypeRetry = "sagaflow.SagaRetry.v1"
)

// History event names of operator actions.
const (
	// EventSignalReceived: a signal reached the saga (Detail: its name).
	EventSignalReceived = "saga.signal_received"
	// EventRetryRequested: an operator asked a parked saga to retry.
	EventRetryRequested = "saga.retry_requested"
)

// SignalSaga is the payload of TypeSignal.
type SignalSaga struct {
	// Name says which signal it is, for example "approved".
	Name string `json:"name"`
	// Payload is the signal's data, as JSON.
	Payload json.RawMessage `json:"payload,omitempty"`
}

// RetrySaga is the payload of TypeRetry.
type RetrySaga struct {
	// Reason says why, for the history.
	Reason string `json:"reason,omitempty"`
}

func registerOperatorMessages(r *message.Registry) error {
	if err := message.Register[SignalSaga](r, TypeSignal); err != nil {
		return err
	}
	return message.Register[RetrySaga](r, TypeRetry)
}

// OnSignal delivers signal sig, carried by message msgID, to a saga that
// has not finished: a step waiting for that signal consumes it (and the
// saga goes on); otherwise the signal is recorded, and kept in the inbox
// when a later step waits for it. A finished saga refuses it with
// ErrTerminal.
func OnSignal(ctx context.Context, wf Workflow, env Env, inst Instance, state any, msgID string, sig SignalSaga) (Decision, error) {
	if inst.Status.Terminal() {
		return Decision{}, fmt.Errorf("saga %s is %s: signal %q: %w", inst.ID, inst.Status, sig.Name, ErrTerminal)
	}
	r, err := newRun(ctx, wf, env, inst, state)
	if err != nil {
		return Decision{}, err
	}
	r.onSignal(msgID, sig)
	r.stampMessage(0, msgID)
	if err := r.advance(); err != nil {
		return Decision{}, err
	}
	return r.finish()
}

// Retry makes a saga that needs attention compensate again: the
// compensation that failed gets a fresh retry budget, and the saga goes on
// undoing the remaining steps in reverse order. A saga in any other status
// refuses with ErrNotParked.
func Retry(ctx context.Context, wf Workflow, env Env, inst Instance, state any, reason string) (Decision, error) {
	if inst.Status != StatusNeedsAttention {
		return Decision{}, fmt.Errorf("saga %s is %s, not %s: %w", inst.ID, inst.Status, StatusNeedsAttention, ErrNotParked)
	}
	r, err := newRun(ctx, wf, env, inst, state)
	if err != nil {
		return Decision{}, err
	}
	if reason == "" {
		reason = "retry requested"
	}
	r.record(EventRetryRequested, inst.Step, reason)
	r.beginCompensation()
	if err := r.advance(); err != nil {
		return Decision{}, err
	}
	return r.finish()
}
