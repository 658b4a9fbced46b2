package readmodel

import "sync"

// Hub tells in-process subscribers that a model changed (a document
// change or a checkpoint moved). A signal carries no data: a subscriber
// reads the store (Changes, Checkpoint) after it. Signals coalesce, so a
// slow subscriber never blocks a projection. The zero Hub is ready to use.
type Hub struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

// Subscribe returns a channel that receives a signal after each change
// of model, and the function that ends the subscription.
func (h *Hub) Subscribe(model string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = make(map[string]map[chan struct{}]struct{})
	}
	if h.subs[model] == nil {
		h.subs[model] = make(map[chan struct{}]struct{})
	}
	h.subs[model][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[model], ch)
		if len(h.subs[model]) == 0 {
			delete(h.subs, model)
		}
		h.mu.Unlock()
	}
}

// Notify signals every subscriber of model.
func (h *Hub) Notify(model string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[model] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
