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
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", e.handleReady)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no route %s %s; see GET /v1/sagas, POST /v1/sagas, GET /v1/sagas/{id}, POST /v1/sagas/{id}/cancel, /healthz, /readyz", r.Method, r.URL.Path))
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
		for _, p := range builtinAdminPatterns {
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
