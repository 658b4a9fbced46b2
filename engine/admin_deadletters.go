package engine

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/sagaflow/sagaflow/transport"
)

// DeadLettersResponse is the body of GET /v1/dead-letters.
type DeadLettersResponse struct {
	DeadLetters []transport.DeadLetter `json:"dead_letters"`
}

// DeadLetterIDs is the body of POST /v1/dead-letters/replay and /discard.
type DeadLetterIDs struct {
	// IDs are the message IDs of the dead letters.
	IDs []string `json:"ids"`
}

// deadLetterPatterns are the dead-letter routes of the admin API.
var deadLetterPatterns = []string{
	"GET /v1/dead-letters", "GET /v1/dead-letters/{id}", "POST /v1/dead-letters/replay",
	"POST /v1/dead-letters/discard", "POST /v1/dead-letters/{id}/replay", "POST /v1/dead-letters/{id}/discard",
}

// deadLetterRoutes mounts the dead-letter routes on mux.
func (e *Engine) deadLetterRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/dead-letters", e.handleDeadLetters)
	mux.HandleFunc("GET /v1/dead-letters/{id}", e.handleDeadLetter)
	mux.HandleFunc("POST /v1/dead-letters/replay", e.handleSettleDeadLetters("replay"))
	mux.HandleFunc("POST /v1/dead-letters/discard", e.handleSettleDeadLetters("discard"))
	mux.HandleFunc("POST /v1/dead-letters/{id}/replay", e.handleSettleDeadLetter("replay"))
	mux.HandleFunc("POST /v1/dead-letters/{id}/discard", e.handleSettleDeadLetter("discard"))
}

func (e *Engine) handleDeadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "queue", "type", "limit"); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	f := DeadLetterFilter{Queue: q.Get("queue"), Type: q.Get("type")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 10_000 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit %q: want a whole number from 1 to 10000", l))
			return
		}
		f.Limit = n
	}
	dls, err := e.DeadLetters(r.Context(), f)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, DeadLettersResponse{DeadLetters: dls})
}

func (e *Engine) handleDeadLetter(w http.ResponseWriter, r *http.Request) {
	dl, err := e.DeadLetter(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, dl)
}

func (e *Engine) settleFunc(op string) func(*http.Request, []string) (DeadLetterResult, error) {
	if op == "replay" {
		return func(r *http.Request, ids []string) (DeadLetterResult, error) {
			return e.ReplayDeadLetters(r.Context(), ids)
		}
	}
	return func(r *http.Request, ids []string) (DeadLetterResult, error) {
		return e.DiscardDeadLetters(r.Context(), ids)
	}
}

func (e *Engine) handleSettleDeadLetters(op string) http.HandlerFunc {
	settle := e.settleFunc(op)
	return func(w http.ResponseWriter, r *http.Request) {
		var req DeadLetterIDs
		if err := decodeBody(w, r, &req); err != nil {
			writeError(w, bodyStatus(err), err)
			return
		}
		for i, id := range req.IDs {
			if id == "" {
				writeError(w, http.StatusBadRequest, fmt.Errorf("ids[%d] is empty", i))
				return
			}
		}
		res, err := settle(r, req.IDs)
		if err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}

func (e *Engine) handleSettleDeadLetter(op string) http.HandlerFunc {
	settle := e.settleFunc(op)
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		res, err := settle(r, []string{id})
		if err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		if len(res.Done) == 0 {
			writeError(w, http.StatusNotFound, fmt.Errorf("%w: %s", ErrDeadLetterNotFound, id))
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}
