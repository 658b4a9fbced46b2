package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// ssePoll is how often a read-model stream looks at the store for
// changes that another engine process made (changes of this one wake it
// at once).
const ssePoll = time.Second

// sseBatch bounds the changes one read of the change log returns.
const sseBatch = 500

// handleReadModelStream serves a model's changes as server-sent events:
// each change is an event whose id is its change-log position, whose
// event name is the model and whose data is the readmodel.Change as JSON.
// A client that reconnects with Last-Event-ID gets the changes after it
// that the log still holds; when the log no longer holds all of them, a
// "reset" event (data: {"oldest": N}) says so first, and the client should
// read the model again. The stream ends when the client goes or the admin
// server shuts down.
func (e *Engine) handleReadModelStream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "model", "key", "last_event_id"); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	model, key := q.Get("model"), q.Get("key")
	if model == "" {
		writeError(w, http.StatusBadRequest, errors.New(`query parameter "model" is required`))
		return
	}
	rm, err := e.readModels(model)
	if err != nil {
		writeError(w, projectionStatusOf(err), err)
		return
	}
	var last uint64
	lastID := r.Header.Get("Last-Event-ID")
	if lastID == "" {
		lastID = q.Get("last_event_id")
	}
	if lastID != "" {
		if last, err = strconv.ParseUint(lastID, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("Last-Event-ID %q: want the id of an event this stream sent (a whole number)", lastID))
			return
		}
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, errors.New("the connection cannot stream"))
		return
	}
	signal, unsubscribe := e.proj.hub.Subscribe(model)
	defer unsubscribe()
	ctx := r.Context()
	if lastID == "" {
		// A new client starts from now: only changes after it connected.
		if last, err = rm.Head(ctx, model); err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, ": sagaflow read model %s from position %d\n\n", model, last)
	flusher.Flush()

	heartbeat := time.NewTicker(e.opts.StreamHeartbeat)
	defer heartbeat.Stop()
	poll := time.NewTicker(ssePoll)
	defer poll.Stop()
	first := lastID != ""
	for {
		for range 1000 { // bounded catch-up per wake-up
			changes, oldest, err := rm.Changes(ctx, model, last, sseBatch)
			if err != nil {
				if ctx.Err() == nil {
					e.logger.Warn("read-model stream: read changes failed", "model", model, "err", err)
				}
				return
			}
			if first && oldest > last+1 {
				fmt.Fprintf(w, "event: reset\ndata: {\"oldest\":%d}\n\n", oldest)
			}
			first = false
			for _, c := range changes {
				last = c.Position
				if key != "" && c.Key != key {
					continue
				}
				data, err := json.Marshal(c)
				if err != nil {
					return
				}
				fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", c.Position, model, data)
			}
			if len(changes) > 0 {
				// Even filtered out, move the client's position on.
				flusher.Flush()
			}
			if len(changes) < sseBatch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-e.proj.streamsEnd:
			return
		case <-signal:
		case <-poll.C:
		case <-heartbeat.C:
			fmt.Fprint(w, ": heartbeat\n\n")
			flusher.Flush()
		}
	}
}
