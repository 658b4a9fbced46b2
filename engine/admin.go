package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sagaflow/sagaflow/workflows"
)

// MaxRequestBody bounds an admin API request body (1 MiB).
const MaxRequestBody = 1 << 20

// APIError is the JSON body of every admin API error response.
type APIError struct {
	// Error says what was wrong, in words for the caller.
	Error string `json:"error"`
}

// ListResponse is the body of GET /v1/sagas.
type ListResponse struct {
	Sagas []SagaSummary `json:"sagas"`
	// Next is the cursor of the next page ("" on the last page).
	Next string `json:"next,omitempty"`
}

// StartResponse is the body of POST /v1/sagas.
type StartResponse struct {
	ID string `json:"id"`
}

// AdminHandler returns the admin HTTP API:
//
//	POST /v1/sagas                 start a saga (StartRequest) -> 201 StartResponse
//	GET  /v1/sagas?status=&workflow=&after=&limit=   list -> ListResponse
//	GET  /v1/sagas/{id}            one saga with its history -> Saga
//	POST /v1/sagas/{id}/cancel     cancel ({"reason": "..."} optional) -> 202
//	GET  /healthz                  the process is up
//	GET  /readyz                   the engine runs, its store answers, its transport is connected
//
// Errors are JSON APIError bodies: 400 for malformed requests, 404 for
// unknown sagas or workflows, 409 for a finished saga, 503 when not running.
func (e *Engine) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/sagas", e.handleStart)
	mux.HandleFunc("GET /v1/sagas", e.handleList)
	mux.HandleFunc("GET /v1/sagas/{id}", e.handleGet)
	mux.HandleFunc("POST /v1/sagas/{id}/cancel", e.handleCancel)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", e.handleReady)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no route %s %s; see GET /v1/sagas, POST /v1/sagas, GET /v1/sagas/{id}, POST /v1/sagas/{id}/cancel, /healthz, /readyz", r.Method, r.URL.Path))
	})
	return mux
}

func (e *Engine) handleStart(w http.ResponseWriter, r *http.Request) {
	var req StartRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if req.Workflow == "" {
		writeError(w, http.StatusBadRequest, errors.New(`field "workflow" is required`))
		return
	}
	id, err := e.StartSaga(r.Context(), req)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusCreated, StartResponse{ID: id})
}

func (e *Engine) handleGet(w http.ResponseWriter, r *http.Request) {
	s, err := e.GetSaga(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (e *Engine) handleList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := ListRequest{Workflow: q.Get("workflow"), After: q.Get("after")}
	for _, v := range q["status"] {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				req.Status = append(req.Status, workflows.Status(s))
			}
		}
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a whole number from 1 to 1000", l))
			return
		}
		req.Limit = n
	}
	sagas, next, err := e.ListSagas(r.Context(), req)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	if sagas == nil {
		sagas = []SagaSummary{}
	}
	writeJSON(w, http.StatusOK, ListResponse{Sagas: sagas, Next: next})
}

func (e *Engine) handleCancel(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, &body); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
	}
	if err := e.CancelSaga(r.Context(), r.PathValue("id"), body.Reason); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "cancelling"})
}

func (e *Engine) handleReady(w http.ResponseWriter, r *http.Request) {
	if !e.running.Load() {
		writeError(w, http.StatusServiceUnavailable, ErrNotRunning)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := e.deps.Store.Ping(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("store: %w", err))
		return
	}
	// A transport that can tell (RabbitMQ: connected, not blocked) is asked too.
	if r, ok := e.deps.Transport.(interface{ Ready() error }); ok {
		if err := r.Ready(); err != nil {
			writeError(w, http.StatusServiceUnavailable, fmt.Errorf("transport: %w", err))
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// decodeBody reads one JSON object of at most MaxRequestBody bytes into v,
// rejecting unknown fields and trailing data.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("content type %q: send application/json", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return fmt.Errorf("request body over %d bytes", MaxRequestBody)
		case errors.Is(err, io.EOF):
			return errors.New("request body is empty; send a JSON object")
		default:
			return fmt.Errorf("request body is not valid JSON for this call: %w", err)
		}
	}
	if dec.More() {
		return errors.New("request body has data after the JSON object")
	}
	return nil
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrInvalidRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrSagaNotFound), errors.Is(err, ErrUnknownWorkflow):
		return http.StatusNotFound
	case errors.Is(err, ErrSagaFinished):
		return http.StatusConflict
	case errors.Is(err, ErrNotRunning):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, APIError{Error: err.Error()})
}
