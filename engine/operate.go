package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sagaflow/sagaflow/actors"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/workflows"
)

// ErrNotParked: a retry of a saga that does not need attention.
var ErrNotParked = errors.New("saga does not need attention")

// SignalRequest is an external signal for a saga.
type SignalRequest struct {
	// Name says which signal it is, for example "approved".
	Name string `json:"name"`
	// Payload is the signal's data, as JSON.
	Payload json.RawMessage `json:"payload,omitempty"`
}

// WorkflowInfo describes one registered workflow version.
type WorkflowInfo struct {
	Name    string               `json:"name"`
	Version int                  `json:"version"`
	Steps   []workflows.StepInfo `json:"steps"`
	// Mermaid is the workflow as a Mermaid flowchart.
	Mermaid string `json:"mermaid"`
}

// sagaInfo returns the stored summary of saga id, or ErrSagaNotFound.
func (e *Engine) sagaInfo(ctx context.Context, id string) (store.StreamInfo, error) {
	if !e.running.Load() {
		return store.StreamInfo{}, ErrNotRunning
	}
	if err := validID(id); err != nil {
		return store.StreamInfo{}, err
	}
	info, err := e.deps.Store.Info(ctx, actors.SagaStream(id))
	if errors.Is(err, store.ErrNotFound) {
		return store.StreamInfo{}, fmt.Errorf("%w: %s", ErrSagaNotFound, id)
	}
	if err != nil {
		return store.StreamInfo{}, fmt.Errorf("saga %s: %w", id, err)
	}
	return info, nil
}

// SignalSaga sends signal req to saga id, which records it in its history
// (saga.signal_received); a step waiting for a signal of that name
// consumes it and the saga goes on. It returns once the signal is sent; a
// finished saga refuses it with ErrSagaFinished.
func (e *Engine) SignalSaga(ctx context.Context, id string, req SignalRequest) error {
	if req.Name == "" {
		return fmt.Errorf("%w: field \"name\" is required", ErrInvalidRequest)
	}
	if len(req.Name) > 200 {
		return fmt.Errorf("%w: signal name is %d characters, at most 200", ErrInvalidRequest, len(req.Name))
	}
	if len(req.Payload) > 0 && !json.Valid(req.Payload) {
		return fmt.Errorf("%w: signal payload is not valid JSON", ErrInvalidRequest)
	}
	info, err := e.sagaInfo(ctx, id)
	if err != nil {
		return err
	}
	if st := workflows.Status(info.Meta.Status); st.Terminal() {
		return fmt.Errorf("%w: saga %s is %s", ErrSagaFinished, id, st)
	}
	if err := e.sendControl(ctx, id, info.Meta.CorrelationID, &workflows.SignalSaga{Name: req.Name, Payload: req.Payload}); err != nil {
		return fmt.Errorf("signal saga %s: %w", id, err)
	}
	return nil
}

// RetrySaga makes saga id, parked because a compensation failed after its
// retry budget (status needs_attention), try that compensation again with
// a fresh budget and go on compensating. Any other status returns
// ErrNotParked.
func (e *Engine) RetrySaga(ctx context.Context, id, reason string) error {
	info, err := e.sagaInfo(ctx, id)
	if err != nil {
		return err
	}
	if st := workflows.Status(info.Meta.Status); st != workflows.StatusNeedsAttention {
		return fmt.Errorf("%w: saga %s is %s", ErrNotParked, id, st)
	}
	if err := e.sendControl(ctx, id, info.Meta.CorrelationID, &workflows.RetrySaga{Reason: reason}); err != nil {
		return fmt.Errorf("retry saga %s: %w", id, err)
	}
	return nil
}

// SagaHistory returns every record of saga id, oldest first: each step
// started (with its command's ID), each attempt, retry, reply (with its
// ID), compensation, signal and operator action, with its time.
func (e *Engine) SagaHistory(ctx context.Context, id string) ([]workflows.Record, error) {
	s, err := e.GetSaga(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.History, nil
}

// WorkflowInfos describes every registered workflow version, by name then
// version.
func (e *Engine) WorkflowInfos() []WorkflowInfo {
	var out []WorkflowInfo
	for _, wf := range e.Workflows() {
		out = append(out, workflowInfo(wf))
	}
	return out
}

// WorkflowInfo describes workflow name at version (0: the latest).
func (e *Engine) WorkflowInfo(name string, version int) (WorkflowInfo, error) {
	wf, ok := e.workflow(name, version)
	if !ok {
		if version > 0 {
			return WorkflowInfo{}, fmt.Errorf("%w: %q v%d", ErrUnknownWorkflow, name, version)
		}
		return WorkflowInfo{}, fmt.Errorf("%w: %q", ErrUnknownWorkflow, name)
	}
	return workflowInfo(wf), nil
}

func workflowInfo(wf workflows.Workflow) WorkflowInfo {
	return WorkflowInfo{Name: wf.Name(), Version: wf.Version(), Steps: wf.Steps(), Mermaid: workflows.Mermaid(wf)}
}
