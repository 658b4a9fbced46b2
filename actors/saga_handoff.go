package actors

import (
	"sync"
	"time"

	"github.com/sagaflow/sagaflow/workflows"
)

// A saga is created outside its actor (createSaga commits version 1 and
// sends the saga a resume), and the actor, when the resume arrives, would
// read back from the store what createSaga has just written. The handoff
// gives the actor that first version in memory instead: createSaga puts
// it after its commit, the actor takes it when it starts.
//
// What the actor takes may be stale: another engine may have moved the
// saga on meanwhile (its partition was elsewhere, then came here). The
// actor treats a handed-off version like a cached one, never like one it
// read: a commit on it fails with a concurrency conflict and a refusal
// makes the actor read the store before deciding again (see
// sagaEntity.handle), so staleness costs a retry and never a wrong
// decision. The age limit keeps such retries rare, and the capacity
// bounds the memory of handoffs nobody takes (the resume went to another
// engine, or the actor had read the store first).

// handoffCapacity bounds the sagas a handoff holds; the oldest goes first.
// At full load the embedded default keeps about a thousand sagas in flight,
// and a resume is taken within milliseconds of its saga's creation.
const handoffCapacity = 1024

// handoffMaxAge is the age after which a handed-off saga is not taken:
// the actor reads the store instead.
const handoffMaxAge = 5 * time.Second

// handedOff is one created saga waiting for its actor.
type handedOff struct {
	snap  SagaSnapshot
	state any        // the decoded workflow state of snap.Instance
	spans *sagaSpans // the open spans of the steps it started (nil: none)
	at    time.Time
}

// sagaHandoff holds the sagas this process created and whose actors have
// not started yet. Its zero value is ready; it is safe for concurrent use.
type sagaHandoff struct {
	mu   sync.Mutex
	byID map[string]handedOff
	ring [handoffCapacity]string // IDs in the order put, for eviction
	next int                     // the ring slot the next put takes
}

// put hands saga snap.Instance.ID over, with its decoded state and open
// spans, at now.
func (h *sagaHandoff) put(snap SagaSnapshot, state any, spans *sagaSpans, now time.Time) {
	id := snap.Instance.ID
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byID == nil {
		h.byID = make(map[string]handedOff, handoffCapacity)
	}
	if old := h.ring[h.next]; old != "" {
		delete(h.byID, old) // a no-op when it was taken already
	}
	h.ring[h.next] = id
	h.next = (h.next + 1) % handoffCapacity
	h.byID[id] = handedOff{snap: snap, state: state, spans: spans, at: now}
}

// take removes saga id and returns it, unless it is not there or older
// than handoffMaxAge at now.
func (h *sagaHandoff) take(id string, now time.Time) (SagaSnapshot, any, *sagaSpans, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	got, ok := h.byID[id]
	if !ok {
		return SagaSnapshot{}, nil, nil, false
	}
	delete(h.byID, id)
	if now.Sub(got.at) > handoffMaxAge {
		return SagaSnapshot{}, nil, nil, false
	}
	return got.snap, got.state, got.spans, true
}

// len is the number of sagas held.
func (h *sagaHandoff) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.byID)
}

// createdSnapshot is what LoadSaga would read of a saga whose first
// commit is dec's, committed as version 1 with trace headers and, if not
// "", the handled message ID.
func createdSnapshot(dec workflows.Decision, trace map[string]string, handled string) SagaSnapshot {
	snap := SagaSnapshot{
		Instance: dec.Instance, Version: 1, History: dec.Records,
		Handled: make(map[string]struct{}, 1), Trace: trace,
	}
	if handled != "" {
		snap.Handled[handled] = struct{}{}
	}
	return snap
}
