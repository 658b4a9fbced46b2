package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sagaflow/sagaflow/actors"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/workflows"
)

// StartRequest asks for a new saga.
type StartRequest struct {
	// Workflow names the workflow; its latest version is started.
	Workflow string `json:"workflow"`
	// Input is the workflow's input as JSON.
	Input json.RawMessage `json:"input,omitempty"`
	// ID is the saga's ID (default: a new UUIDv7). Starting an ID that
	// exists returns that saga: the ID is the idempotency key.
	ID string `json:"id,omitempty"`
	// CorrelationID ties the saga to a business process.
	CorrelationID string `json:"correlation_id,omitempty"`
}

// Saga is a saga's public view.
type Saga struct {
	ID            string             `json:"id"`
	Workflow      string             `json:"workflow"`
	Version       int                `json:"version"`
	Status        workflows.Status   `json:"status"`
	CorrelationID string             `json:"correlation_id,omitempty"`
	Step          string             `json:"step,omitempty"`
	Error         string             `json:"error,omitempty"`
	Input         json.RawMessage    `json:"input,omitempty"`
	State         json.RawMessage    `json:"state,omitempty"`
	CreatedAt     time.Time          `json:"created_at"`
	UpdatedAt     time.Time          `json:"updated_at"`
	History       []workflows.Record `json:"history,omitempty"`
}

// SagaSummary is one row of a saga listing.
type SagaSummary struct {
	ID        string           `json:"id"`
	Workflow  string           `json:"workflow"`
	Status    workflows.Status `json:"status"`
	CreatedAt time.Time        `json:"created_at"`
	UpdatedAt time.Time        `json:"updated_at"`
}

// ListRequest filters a saga listing.
type ListRequest struct {
	// Status keeps sagas with one of these statuses (none: all).
	Status []workflows.Status
	// Workflow keeps sagas of this workflow.
	Workflow string
	// After is the cursor returned by the previous page.
	After string
	// Limit caps the page (default 100, at most 1000).
	Limit int
}

// StartSaga starts a saga and returns its ID. It returns once the saga is
// durably recorded; its steps run in the background.
func (e *Engine) StartSaga(ctx context.Context, req StartRequest) (string, error) {
	if !e.running.Load() {
		return "", ErrNotRunning
	}
	wf, ok := e.workflow(req.Workflow, 0)
	if !ok {
		return "", fmt.Errorf("%w: %q (registered: %s)", ErrUnknownWorkflow, req.Workflow, strings.Join(e.workflowNames(), ", "))
	}
	id := req.ID
	if id == "" {
		id = message.NewID()
	} else if err := validID(id); err != nil {
		return "", err
	}
	err := actors.StartSaga(ctx, e.deps, wf, id, req.CorrelationID, req.Input)
	if errors.Is(err, actors.ErrSagaExists) {
		return id, nil
	}
	if errors.Is(err, actors.ErrInvalidInput) {
		return "", fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if err != nil {
		return "", err
	}
	return id, nil
}

func validID(id string) error {
	if len(id) > 200 {
		return fmt.Errorf("%w: saga ID is %d characters, at most 200", ErrInvalidRequest, len(id))
	}
	if strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("%w: saga ID %q must not contain '/' or NUL", ErrInvalidRequest, id)
	}
	return nil
}

func (e *Engine) workflowNames() []string {
	var names []string
	seen := map[string]bool{}
	for _, wf := range e.Workflows() {
		if !seen[wf.Name()] {
			seen[wf.Name()] = true
			names = append(names, wf.Name())
		}
	}
	return names
}

// GetSaga returns saga id with its history.
func (e *Engine) GetSaga(ctx context.Context, id string) (Saga, error) {
	if !e.running.Load() {
		return Saga{}, ErrNotRunning
	}
	snap, err := actors.LoadSaga(ctx, e.deps, id)
	if errors.Is(err, store.ErrNotFound) {
		return Saga{}, fmt.Errorf("%w: %s", ErrSagaNotFound, id)
	}
	if err != nil {
		return Saga{}, err
	}
	in := snap.Instance
	s := Saga{
		ID: in.ID, Workflow: in.Workflow, Version: in.Version, Status: in.Status,
		CorrelationID: in.CorrelationID, Error: in.Error, Input: in.Input, State: in.State,
		CreatedAt: in.CreatedAt, UpdatedAt: in.UpdatedAt, History: snap.History,
	}
	if wf, ok := e.workflow(in.Workflow, in.Version); ok && !in.Status.Terminal() {
		if steps := wf.Steps(); in.Step < len(steps) {
			s.Step = steps[in.Step].Name
		}
	}
	return s, nil
}

// ListSagas lists sagas ordered by ID; next is the cursor of the next page
// ("" on the last).
func (e *Engine) ListSagas(ctx context.Context, req ListRequest) (sagas []SagaSummary, next string, err error) {
	if !e.running.Load() {
		return nil, "", ErrNotRunning
	}
	limit := req.Limit
	if limit <= 0 {
		limit = 100
	}
	if limit > 1000 {
		return nil, "", fmt.Errorf("%w: limit %d: at most 1000", ErrInvalidRequest, limit)
	}
	f := store.ListFilter{Kind: "saga", Type: req.Workflow, Limit: limit + 1}
	if req.After != "" {
		f.After = actors.SagaStream(req.After)
	}
	for _, st := range req.Status {
		if !st.Valid() {
			return nil, "", fmt.Errorf("%w: status %q: want running, compensating, completed, compensated, cancelled or needs_attention", ErrInvalidRequest, st)
		}
		f.Status = append(f.Status, string(st))
	}
	infos, err := e.deps.Store.List(ctx, f)
	if err != nil {
		return nil, "", fmt.Errorf("list sagas: %w", err)
	}
	for i, info := range infos {
		if i == limit {
			next = sagas[len(sagas)-1].ID
			break
		}
		sagas = append(sagas, SagaSummary{
			ID: strings.TrimPrefix(info.Stream, "saga/"), Workflow: info.Meta.Type,
			Status: workflows.Status(info.Meta.Status), CreatedAt: info.Meta.CreatedAt, UpdatedAt: info.Meta.UpdatedAt,
		})
	}
	return sagas, next, nil
}

// CancelSaga asks saga id to stop and compensate its completed steps. It
// returns once the request is sent; the saga reaches StatusCancelled later.
func (e *Engine) CancelSaga(ctx context.Context, id, reason string) error {
	if !e.running.Load() {
		return ErrNotRunning
	}
	info, err := e.deps.Store.Info(ctx, actors.SagaStream(id))
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrSagaNotFound, id)
	}
	if err != nil {
		return err
	}
	st := workflows.Status(info.Meta.Status)
	if st.Terminal() {
		return fmt.Errorf("%w: saga %s is %s", ErrSagaFinished, id, st)
	}
	return e.sendControl(ctx, id, info.Meta.CorrelationID, &workflows.CancelSaga{Reason: reason})
}

// WaitSaga polls saga id until it is terminal or needs attention, or ctx
// is done.
func (e *Engine) WaitSaga(ctx context.Context, id string) (Saga, error) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s, err := e.GetSaga(ctx, id)
		if err != nil && !errors.Is(err, ErrSagaNotFound) {
			return Saga{}, err
		}
		if err == nil && (s.Status.Terminal() || s.Status == workflows.StatusNeedsAttention) {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return s, fmt.Errorf("wait for saga %s: %w", id, ctx.Err())
		case <-t.C:
		}
	}
}

// Send publishes a message built from body (a registered struct): a
// command to service's aggregate key, for callers outside sagas.
func (e *Engine) Send(ctx context.Context, service, key string, body any, headers map[string]string) (message.Envelope, error) {
	if !e.running.Load() {
		return message.Envelope{}, ErrNotRunning
	}
	env, err := e.registry.New(message.KindCommand, key, body)
	if err != nil {
		return message.Envelope{}, err
	}
	env.Destination, env.Source, env.OccurredAt, env.Headers = service, e.opts.Name, e.opts.Now(), headers
	if err := e.deps.Transport.Publish(ctx, env); err != nil {
		return message.Envelope{}, fmt.Errorf("send %s to %s/%s: %w", env.Type, service, key, err)
	}
	return env, nil
}

// AggregateState returns the current state of aggregate id served by
// service, with its stream version.
func (e *Engine) AggregateState(ctx context.Context, service, id string) (state any, version uint64, err error) {
	if !e.running.Load() {
		return nil, 0, ErrNotRunning
	}
	e.mu.RLock()
	t, ok := e.aggregates[service]
	e.mu.RUnlock()
	if !ok {
		return nil, 0, fmt.Errorf("%w: no aggregate serves %q", ErrInvalidRequest, service)
	}
	state, version, _, err = actors.LoadAggregate(ctx, e.deps, t, id)
	return state, version, err
}

// Store returns the store the engine runs on (nil until ready).
func (e *Engine) Store() store.Store {
	if e.deps == nil {
		return nil
	}
	return e.deps.Store
}
