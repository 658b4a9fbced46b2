package engine

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// eventSourcingPatterns are the event-sourcing routes of the admin API.
var eventSourcingPatterns = []string{
	"GET /v1/aggregates/{service}/{id}", "POST /v1/subjects/{id}/forget",
}

// eventSourcingRoutes mounts the event-sourcing routes on mux.
func (e *Engine) eventSourcingRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/aggregates/{service}/{id}", e.handleAggregate)
	mux.HandleFunc("POST /v1/subjects/{id}/forget", e.handleForget)
}

// handleAggregate answers GET /v1/aggregates/{service}/{id}[?version=N | ?at=RFC3339].
func (e *Engine) handleAggregate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "version", "at"); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	at, err := parseAggregateAt(q.Get("version"), q.Get("at"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	view, err := e.AggregateStateAt(r.Context(), r.PathValue("service"), r.PathValue("id"), at)
	if err == nil {
		view, err = encodeState(view)
	}
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, view)
}

// parseAggregateAt reads the version and at query parameters.
func parseAggregateAt(version, at string) (AggregateAt, error) {
	var p AggregateAt
	if version != "" && at != "" {
		return p, errors.New("give version or at, not both")
	}
	if version != "" {
		v, err := strconv.ParseUint(version, 10, 64)
		if err != nil || v == 0 {
			return p, fmt.Errorf("version %q: want a commit version, a whole number from 1", version)
		}
		p.Version = v
	}
	if at != "" {
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return p, fmt.Errorf("at %q: want an RFC 3339 time such as 2026-03-01T12:00:00Z", at)
		}
		p.Time = t
	}
	return p, nil
}

// handleForget answers POST /v1/subjects/{id}/forget.
func (e *Engine) handleForget(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Query()) > 0 {
		writeError(w, http.StatusBadRequest, onlyParams(r.URL.Query()))
		return
	}
	subject := r.PathValue("id")
	if err := e.Forget(r.Context(), subject); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, ForgetResponse{Subject: subject, Forgotten: true})
}
