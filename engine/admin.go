package engine

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
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
	// Created is false when the saga existed already (its ID or
	// idempotency key was used before); the call then changed nothing.
	Created bool `json:"created"`
}

// AdminHandler returns the admin HTTP API:
//
//	POST /v1/sagas                   start a saga (StartRequest; optional Idempotency-Key header)
//	                                 -> 201 StartResponse, or 200 when it existed already
//	GET  /v1/sagas                   list -> ListResponse; query: status (repeat or comma-separate),
//	                                 workflow (or type), correlation_id, created_from, created_to
//	                                 (RFC 3339), after (the cursor), limit (1-1000)
//	GET  /v1/sagas/{id}              one saga with its history -> Saga
//	GET  /v1/sagas/{id}/history      its history alone -> HistoryResponse
//	POST /v1/sagas/{id}/cancel       cancel ({"reason": "..."} optional) -> 202
//	POST /v1/sagas/{id}/signal       send a signal (SignalRequest) -> 202
//	POST /v1/sagas/{id}/retry        retry a parked saga's compensation ({"reason": "..."} optional) -> 202
//	GET  /v1/circuits                the circuit breakers per destination service -> CircuitsResponse
//	GET  /v1/dead-letters            list -> DeadLettersResponse; query: queue, type, limit (1-10000)
//	GET  /v1/dead-letters/{id}       one dead letter with its message -> transport.DeadLetter
//	POST /v1/dead-letters/replay     replay ({"ids": [...]}, at most 1000) -> DeadLetterResult
//	POST /v1/dead-letters/discard    discard ({"ids": [...]}) -> DeadLetterResult
//	POST /v1/dead-letters/{id}/replay, /v1/dead-letters/{id}/discard: one letter -> DeadLetterResult (404 when missing)
//	GET  /v1/aggregates/{service}/{id}  an aggregate's state -> AggregateView; query: version (a commit)
//	                                 or at (RFC 3339), not both (default: the latest)
//	POST /v1/subjects/{id}/forget    forget a data subject (crypto-shredding) -> ForgetResponse
//	GET  /v1/workflows               registered workflows with steps and Mermaid -> WorkflowsResponse
//	GET  /v1/workflows/{name}        one (query: version, default the latest) -> WorkflowInfo
//	GET  /v1/projections, /v1/projections/{name}, POST /v1/projections/{name}/rebuild,
//	GET  /v1/readmodels/{model}, /v1/readmodels/{model}/{key}, /v1/readmodels/stream:
//	                                 projections and read models (see projectionRoutes)
//	GET  /healthz                    the process is up
//	GET  /readyz                     the engine runs, its store answers, its transport is connected
//
// Errors are JSON APIError bodies: 400 for malformed requests (unknown
// fields or query parameters, bad values, JSON nested deeper than
// message.MaxDepth+1), 413 for bodies over MaxRequestBody, 401
// without the token, 404 for unknown sagas, workflows, dead letters or
// aggregates (or an aggregate version or time that does not exist), 409
// for a saga in the wrong status, 503 when not running or stopping.
//
// Handlers added with HandleAdmin are mounted on the same mux. When
// Options.AdminToken is set, every route except /healthz and /readyz
// requires "Authorization: Bearer <token>".
func (e *Engine) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	e.mu.RLock()
	mounts := append([]adminMount(nil), e.adminMounts...)
	e.mu.RUnlock()
	for _, m := range mounts {
		mux.Handle(m.pattern, m.handler)
	}
	mux.HandleFunc("POST /v1/sagas", e.handleStart)
	mux.HandleFunc("GET /v1/sagas", e.handleList)
	mux.HandleFunc("GET /v1/sagas/{id}", e.handleGet)
	mux.HandleFunc("POST /v1/sagas/{id}/cancel", e.handleCancel)
	mux.HandleFunc("GET /v1/sagas/{id}/history", e.handleHistory)
	mux.HandleFunc("POST /v1/sagas/{id}/signal", e.handleSignal)
	mux.HandleFunc("POST /v1/sagas/{id}/retry", e.handleRetry)
	mux.HandleFunc("GET /v1/circuits", e.handleCircuits)
	e.deadLetterRoutes(mux)
	e.eventSourcingRoutes(mux)
	e.projectionRoutes(mux) // projections and read models: admin_projections.go
	mux.HandleFunc("GET /v1/workflows", e.handleWorkflows)
	mux.HandleFunc("GET /v1/workflows/{name}", e.handleWorkflow)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", e.handleReady)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no route %s %s; the API is under /v1/sagas, /v1/dead-letters, /v1/aggregates, /v1/subjects and /v1/workflows (see the engine package's AdminHandler), plus /healthz and /readyz", r.Method, r.URL.Path))
	})
	return requireToken(e.opts.AdminToken, mux)
}

// adminMount is a handler added to the admin mux with HandleAdmin.
type adminMount struct {
	pattern string
	handler http.Handler
}

// HandleAdmin mounts h on the admin HTTP server at pattern (a
// net/http.ServeMux pattern such as "GET /console/" or "/console/"),
// behind the same bearer-token check as the API. Call it before Run; a
// pattern that is malformed or conflicts with another route is reported
// by Err and Run. The web console mounts itself this way.
func (e *Engine) HandleAdmin(pattern string, h http.Handler) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started.Load() {
		e.regErrs = append(e.regErrs, fmt.Errorf("admin handler %q: HandleAdmin called after Run", pattern))
		return
	}
	if h == nil {
		e.regErrs = append(e.regErrs, fmt.Errorf("admin handler %q: nil handler", pattern))
		return
	}
	// Try the pattern on a scratch mux with the routes so far, so that a
	// bad or conflicting pattern is an error here and not a panic in Run.
	scratch := http.NewServeMux()
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("admin handler %q: %v", pattern, r)
			}
		}()
		for _, m := range e.adminMounts {
			scratch.Handle(m.pattern, m.handler)
		}
		patterns := append(append(append([]string(nil), builtinAdminPatterns...), deadLetterPatterns...), eventSourcingPatterns...)
		for _, p := range append(patterns, projectionPatterns...) {
			scratch.Handle(p, http.NotFoundHandler())
		}
		scratch.Handle(pattern, h)
		return nil
	}()
	if err != nil {
		e.regErrs = append(e.regErrs, err)
		return
	}
	e.adminMounts = append(e.adminMounts, adminMount{pattern: pattern, handler: h})
}

// builtinAdminPatterns are the admin API's own routes, which a mounted
// handler may not take.
var builtinAdminPatterns = []string{
	"POST /v1/sagas", "GET /v1/sagas", "GET /v1/sagas/{id}", "POST /v1/sagas/{id}/cancel",
	"GET /v1/sagas/{id}/history", "POST /v1/sagas/{id}/signal", "POST /v1/sagas/{id}/retry",
	"GET /v1/workflows", "GET /v1/workflows/{name}",
	"GET /healthz", "GET /readyz", "/",
}

// requireToken wraps h so that, when token is not empty, a request must
// carry "Authorization: Bearer <token>"; /healthz and /readyz stay open
// for probes. The comparison takes constant time.
func requireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			h.ServeHTTP(w, r)
			return
		}
		auth := r.Header.Get("Authorization")
		got, ok := strings.CutPrefix(auth, "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sagaflow"`)
			msg := "missing bearer token: send Authorization: Bearer <token>"
			if ok {
				msg = "bearer token does not match the engine's admin token"
			}
			writeError(w, http.StatusUnauthorized, errors.New(msg))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// validateAdmin refuses an admin API that listens beyond loopback without
// a token.
func validateAdmin(addr, token string) error {
	if addr == AdminOff {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("admin address %q: want host:port or %q: %w", addr, AdminOff, err)
	}
	if token != "" {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("admin address %q listens beyond loopback: set an admin token (--admin-token-file or SAGAFLOW_ADMIN_TOKEN), or bind 127.0.0.1", addr)
}

func (e *Engine) handleStart(w http.ResponseWriter, r *http.Request) {
	var req StartRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, bodyStatus(err), err)
		return
	}
	if req.Workflow == "" {
		writeError(w, http.StatusBadRequest, errors.New(`field "workflow" is required`))
		return
	}
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if req.IdempotencyKey != "" && req.IdempotencyKey != key {
			writeError(w, http.StatusBadRequest, errors.New(`the Idempotency-Key header and the field "idempotency_key" differ`))
			return
		}
		req.IdempotencyKey = key
	}
	resp, err := e.Start(r.Context(), req)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	status := http.StatusCreated
	if !resp.Created {
		status = http.StatusOK
	}
	writeJSON(w, status, resp)
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
	if err := onlyParams(q, "status", "workflow", "type", "correlation_id", "created_from", "created_to", "after", "limit"); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	req := ListRequest{Workflow: q.Get("workflow"), After: q.Get("after"), CorrelationID: q.Get("correlation_id")}
	if t := q.Get("type"); t != "" {
		if req.Workflow != "" && req.Workflow != t {
			writeError(w, http.StatusBadRequest, errors.New(`"type" and "workflow" name the same filter; give one`))
			return
		}
		req.Workflow = t
	}
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"created_from", &req.CreatedFrom}, {"created_to", &req.CreatedTo}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Errorf("%s %q: want an RFC 3339 time such as 2026-03-01T12:00:00Z", p.name, v))
				return
			}
			*p.to = t
		}
	}
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
			writeError(w, bodyStatus(err), err)
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
	if err := transport.Ready(e.deps.Transport); err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("transport: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// errBodyTooLarge: a request body over MaxRequestBody (answered 413).
var errBodyTooLarge = errors.New("request body too large")

// decodeBody reads one JSON object of at most MaxRequestBody bytes into v,
// rejecting unknown fields, trailing data and nesting deeper than
// message.MaxDepth+1 (the input of a start sits one level down). A body
// whose declared length is over the limit is refused before it is read,
// one that turns out longer once the limit is read, and deep nesting as
// soon as it is read: none is parsed in full. The caller answers with
// bodyStatus(err).
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("content type %q: send application/json", ct)
	}
	if r.ContentLength > MaxRequestBody {
		return fmt.Errorf("%w: %d bytes, limit %d", errBodyTooLarge, r.ContentLength, MaxRequestBody)
	}
	dec := json.NewDecoder(message.LimitDepth(http.MaxBytesReader(w, r.Body, MaxRequestBody), message.MaxDepth+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return fmt.Errorf("%w: over %d bytes", errBodyTooLarge, MaxRequestBody)
		case errors.Is(err, message.ErrTooDeep):
			return fmt.Errorf("request body refused: %w", err)
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

// bodyStatus is the status that answers decodeBody's error: 413 for a
// body over the limit, 400 for the rest.
func bodyStatus(err error) int {
	if errors.Is(err, errBodyTooLarge) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// onlyParams refuses query parameters other than known.
func onlyParams(q map[string][]string, known ...string) error {
	for k := range q {
		ok := false
		for _, n := range known {
			ok = ok || k == n
		}
		if !ok {
			return fmt.Errorf("unknown query parameter %q; known: %s", k, strings.Join(known, ", "))
		}
	}
	return nil
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrInvalidRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrSagaNotFound), errors.Is(err, ErrUnknownWorkflow), errors.Is(err, ErrDeadLetterNotFound),
		errors.Is(err, ErrAggregateNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrSagaFinished), errors.Is(err, ErrNotParked):
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
