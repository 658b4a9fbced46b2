package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	// exists returns that saga: the ID is an idempotency key.
	ID string `json:"id,omitempty"`
	// IdempotencyKey, when ID is empty, names the saga instead: starts
	// with the same workflow and key start one saga, whose ID is derived
	// from them. The admin API also takes it as the Idempotency-Key header.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
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
	ID            string           `json:"id"`
	Workflow      string           `json:"workflow"`
	Status        workflows.Status `json:"status"`
	CorrelationID string           `json:"correlation_id,omitempty"`
	CreatedAt     time.Time        `json:"created_at"`
	UpdatedAt     time.Time        `json:"updated_at"`
}

// ListRequest filters a saga listing.
type ListRequest struct {
	// Status keeps sagas with one of these statuses (none: all).
	Status []workflows.Status
	// Workflow keeps sagas of this workflow (the saga type).
	Workflow string
	// CorrelationID keeps sagas with this correlation ID.
	CorrelationID string
	// CreatedFrom and CreatedTo keep sagas created at or after CreatedFrom
	// and before CreatedTo (zero: unbounded).
	CreatedFrom, CreatedTo time.Time
	// After is the cursor returned by the previous page.
	After string
	// Limit caps the page (default 100, at most 1000).
	Limit int
}

// listScanBudget bounds the sagas one ListSagas call reads to filter by
// correlation ID or time, which the store does not index: a page may then
// hold fewer rows than Limit (or none) and still have a Next cursor.
const listScanBudget = 10_000

// StartSaga starts a saga and returns its ID. It returns once the saga is
// durably recorded; its steps run in the background.
func (e *Engine) StartSaga(ctx context.Context, req StartRequest) (string, error) {
	resp, err := e.Start(ctx, req)
	return resp.ID, err
}

// Start starts a saga like StartSaga and says whether it was created now
// or existed already (a repeated ID or idempotency key).
func (e *Engine) Start(ctx context.Context, req StartRequest) (StartResponse, error) {
	if !e.running.Load() {
		return StartResponse{}, ErrNotRunning
	}
	wf, ok := e.workflow(req.Workflow, 0)
	if !ok {
		return StartResponse{}, fmt.Errorf("%w: %q (registered: %s)", ErrUnknownWorkflow, req.Workflow, strings.Join(e.workflowNames(), ", "))
	}
	id := req.ID
	switch {
	case id != "" && req.IdempotencyKey != "" && id != req.IdempotencyKey:
		return StartResponse{}, fmt.Errorf("%w: give a saga ID or an idempotency key, not both", ErrInvalidRequest)
	case id != "":
		if err := validID(id); err != nil {
			return StartResponse{}, err
		}
	case req.IdempotencyKey != "":
		if len(req.IdempotencyKey) > 200 {
			return StartResponse{}, fmt.Errorf("%w: idempotency key is %d characters, at most 200", ErrInvalidRequest, len(req.IdempotencyKey))
		}
		id = idempotentID(wf.Name(), req.IdempotencyKey)
	default:
		id = message.NewID()
	}
	err := actors.StartSaga(ctx, e.deps, wf, id, req.CorrelationID, req.Input)
	if errors.Is(err, actors.ErrSagaExists) {
		return StartResponse{ID: id}, nil
	}
	if errors.Is(err, actors.ErrInvalidInput) {
		return StartResponse{}, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if err != nil {
		return StartResponse{}, err
	}
	return StartResponse{ID: id, Created: true}, nil
}

// idempotentID is the saga ID of idempotency key key for workflow name:
// the same for the same pair, in every process.
func idempotentID(name, key string) string {
	sum := sha256.Sum256([]byte(name + "\x00" + key))
	return "idem-" + hex.EncodeToString(sum[:16])
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
		if step, ok := workflows.StepAt(wf, in.Step); ok {
			s.Step = step.Name
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
	if !req.CreatedTo.IsZero() && !req.CreatedFrom.IsZero() && !req.CreatedTo.After(req.CreatedFrom) {
		return nil, "", fmt.Errorf("%w: time range %s to %s is empty", ErrInvalidRequest, req.CreatedFrom.Format(time.RFC3339), req.CreatedTo.Format(time.RFC3339))
	}
	f := store.ListFilter{Kind: "saga", Type: req.Workflow}
	if req.After != "" {
		f.After = actors.SagaStream(req.After)
	}
	for _, st := range req.Status {
		if !st.Valid() {
			return nil, "", fmt.Errorf("%w: status %q: want running, compensating, completed, compensated, cancelled or needs_attention", ErrInvalidRequest, st)
		}
		f.Status = append(f.Status, string(st))
	}
	keep := func(m store.Meta) bool {
		return (req.CorrelationID == "" || m.CorrelationID == req.CorrelationID) &&
			(req.CreatedFrom.IsZero() || !m.CreatedAt.Before(req.CreatedFrom)) &&
			(req.CreatedTo.IsZero() || m.CreatedAt.Before(req.CreatedTo))
	}
	// Without post-filters one page of limit+1 tells whether more follow;
	// with them, pages are read until limit rows match or the scan budget
	// is spent.
	page := limit + 1
	if req.CorrelationID != "" || !req.CreatedFrom.IsZero() || !req.CreatedTo.IsZero() {
		page = 500
	}
	for scanned := 0; scanned < listScanBudget; {
		f.Limit = page
		infos, err := e.deps.Store.List(ctx, f)
		if err != nil {
			return nil, "", fmt.Errorf("list sagas: %w", err)
		}
		for _, info := range infos {
			scanned++
			f.After = info.Stream
			if !keep(info.Meta) {
				continue
			}
			if len(sagas) == limit {
				return sagas, sagas[len(sagas)-1].ID, nil
			}
			sagas = append(sagas, SagaSummary{
				ID: strings.TrimPrefix(info.Stream, "saga/"), Workflow: info.Meta.Type,
				Status: workflows.Status(info.Meta.Status), CorrelationID: info.Meta.CorrelationID,
				CreatedAt: info.Meta.CreatedAt, UpdatedAt: info.Meta.UpdatedAt,
			})
		}
		if len(infos) < page {
			return sagas, "", nil // the store has no more
		}
	}
	// Scan budget spent: go on from the last saga read.
	return sagas, strings.TrimPrefix(f.After, "saga/"), nil
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
