package engine

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/sagaflow/sagaflow/projection"
	"github.com/sagaflow/sagaflow/readmodel"
)

// ProjectionsResponse is the body of GET /v1/projections.
type ProjectionsResponse struct {
	Projections []projection.Status `json:"projections"`
}

// ReadModelListResponse is the body of GET /v1/readmodels/{model}.
type ReadModelListResponse struct {
	Docs []readmodel.Doc `json:"docs"`
	// Next is the cursor (the last key) when the page was full.
	Next string `json:"next,omitempty"`
}

// MaxQueryWait bounds the wait of a read-model query with min_seq.
const MaxQueryWait = 30 * time.Second

// projectionPatterns are the routes projectionRoutes adds.
var projectionPatterns = []string{
	"GET /v1/projections", "GET /v1/projections/{name}", "POST /v1/projections/{name}/rebuild",
	"GET /v1/readmodels/stream", "GET /v1/readmodels/{model}", "GET /v1/readmodels/{model}/{key}",
}

// projectionRoutes mounts the projection and read-model API:
//
//	GET  /v1/projections                  every projection's status -> ProjectionsResponse
//	GET  /v1/projections/{name}           one -> projection.Status (with rebuild progress)
//	POST /v1/projections/{name}/rebuild   start a rebuild -> 202 projection.Status; 409 when one runs
//	GET  /v1/readmodels/{model}           list documents -> ReadModelListResponse; query: after, limit (1-10000)
//	GET  /v1/readmodels/{model}/{key}     one document -> readmodel.Doc; query: stream and min_seq wait
//	                                      (at most wait, default 5s, max 30s) until the model reflects event
//	                                      min_seq of stream; 504 when it does not in time
//	GET  /v1/readmodels/stream            server-sent events of a model's changes; query: model (required),
//	                                      key; header Last-Event-ID (or query last_event_id) replays what was missed
func (e *Engine) projectionRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/projections", e.handleProjections)
	mux.HandleFunc("GET /v1/projections/{name}", e.handleProjection)
	mux.HandleFunc("POST /v1/projections/{name}/rebuild", e.handleRebuild)
	mux.HandleFunc("GET /v1/readmodels/stream", e.handleReadModelStream)
	mux.HandleFunc("GET /v1/readmodels/{model}", e.handleReadModelList)
	mux.HandleFunc("GET /v1/readmodels/{model}/{key}", e.handleReadModelGet)
}

// projectionStatusOf maps the projection errors to HTTP statuses.
func projectionStatusOf(err error) int {
	switch {
	case errors.Is(err, ErrUnknownProjection), errors.Is(err, readmodel.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, projection.ErrRebuilding):
		return http.StatusConflict
	case errors.Is(err, readmodel.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotReached):
		return http.StatusGatewayTimeout
	}
	return statusOf(err)
}

func (e *Engine) handleProjections(w http.ResponseWriter, r *http.Request) {
	if err := onlyParams(r.URL.Query()); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ps, err := e.Projections()
	if err != nil {
		writeError(w, projectionStatusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, ProjectionsResponse{Projections: ps})
}

func (e *Engine) handleProjection(w http.ResponseWriter, r *http.Request) {
	st, err := e.ProjectionStatus(r.PathValue("name"))
	if err != nil {
		writeError(w, projectionStatusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (e *Engine) handleRebuild(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := e.StartRebuild(name); err != nil {
		writeError(w, projectionStatusOf(err), err)
		return
	}
	st, err := e.ProjectionStatus(name)
	if err != nil {
		writeError(w, projectionStatusOf(err), err)
		return
	}
	writeJSON(w, http.StatusAccepted, st)
}

func (e *Engine) handleReadModelList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "after", "limit"); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	limit := readmodel.DefaultListLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > readmodel.MaxListLimit {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a whole number from 1 to %d", l, readmodel.MaxListLimit))
			return
		}
		limit = n
	}
	docs, err := e.ListReadModel(r.Context(), r.PathValue("model"), q.Get("after"), limit)
	if err != nil {
		writeError(w, projectionStatusOf(err), err)
		return
	}
	resp := ReadModelListResponse{Docs: docs}
	if resp.Docs == nil {
		resp.Docs = []readmodel.Doc{}
	}
	if len(docs) == limit {
		resp.Next = docs[len(docs)-1].Key
	}
	writeJSON(w, http.StatusOK, resp)
}

func (e *Engine) handleReadModelGet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "stream", "min_seq", "wait"); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	model, key := r.PathValue("model"), r.PathValue("key")
	if ms := q.Get("min_seq"); ms != "" {
		seq, err := strconv.ParseUint(ms, 10, 64)
		if err != nil || seq == 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("min_seq %q: want a whole number from 1", ms))
			return
		}
		stream := q.Get("stream")
		if stream == "" {
			writeError(w, http.StatusBadRequest, errors.New(`min_seq needs "stream": the stream whose event the model must reflect`))
			return
		}
		wait := 5 * time.Second
		if ws := q.Get("wait"); ws != "" {
			d, err := time.ParseDuration(ws)
			if err != nil || d < 0 || d > MaxQueryWait {
				writeError(w, http.StatusBadRequest, fmt.Errorf("wait %q: want a duration from 0s to %v, such as 2s", ws, MaxQueryWait))
				return
			}
			wait = d
		}
		if err := e.WaitForReadModel(r.Context(), model, stream, seq, wait); err != nil {
			writeError(w, projectionStatusOf(err), err)
			return
		}
	} else if q.Has("stream") || q.Has("wait") {
		writeError(w, http.StatusBadRequest, errors.New(`"stream" and "wait" go with "min_seq"`))
		return
	}
	doc, err := e.ReadModel(r.Context(), model, key)
	if err != nil {
		writeError(w, projectionStatusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, doc)
}
