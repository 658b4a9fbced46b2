package engine

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/sagaflow/sagaflow/workflows"
)

// HistoryResponse is the body of GET /v1/sagas/{id}/history.
type HistoryResponse struct {
	ID      string             `json:"id"`
	History []workflows.Record `json:"history"`
}

// WorkflowsResponse is the body of GET /v1/workflows.
type WorkflowsResponse struct {
	Workflows []WorkflowInfo `json:"workflows"`
}

// ReasonRequest is the optional body of cancel and retry.
type ReasonRequest struct {
	// Reason says why, for the history.
	Reason string `json:"reason,omitempty"`
}

func (e *Engine) handleHistory(w http.ResponseWriter, r *http.Request) {
	h, err := e.SagaHistory(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	if h == nil {
		h = []workflows.Record{}
	}
	writeJSON(w, http.StatusOK, HistoryResponse{ID: r.PathValue("id"), History: h})
}

func (e *Engine) handleSignal(w http.ResponseWriter, r *http.Request) {
	var req SignalRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, bodyStatus(err), err)
		return
	}
	if err := e.SignalSaga(r.Context(), r.PathValue("id"), req); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "signalled"})
}

func (e *Engine) handleRetry(w http.ResponseWriter, r *http.Request) {
	var req ReasonRequest
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, &req); err != nil {
			writeError(w, bodyStatus(err), err)
			return
		}
	}
	if err := e.RetrySaga(r.Context(), r.PathValue("id"), req.Reason); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "retrying"})
}

func (e *Engine) handleWorkflows(w http.ResponseWriter, _ *http.Request) {
	infos := e.WorkflowInfos()
	if infos == nil {
		infos = []WorkflowInfo{}
	}
	writeJSON(w, http.StatusOK, WorkflowsResponse{Workflows: infos})
}

func (e *Engine) handleWorkflow(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "version"); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	version := 0
	if v := q.Get("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("version %q: want a whole number from 1", v))
			return
		}
		version = n
	}
	info, err := e.WorkflowInfo(r.PathValue("name"), version)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}
