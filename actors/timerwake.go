package actors

import (
	"container/heap"
	"sync"
	"time"
)

// maxWakeups bounds the due times a timerWake keeps; past it, new ones
// are left to the timer service's periodic look at the store.
const maxWakeups = 100_000

// timerWake holds the due times of the timers this process committed, so
// that the timer service wakes when one falls due instead of polling the
// store often. An entry whose timer was cancelled meanwhile costs one
// needless look at the store, nothing more.
type timerWake struct {
	mu   sync.Mutex
	dues dueHeap
	kick chan struct{} // capacity 1: a new earliest due time
}

func newTimerWake() *timerWake { return &timerWake{kick: make(chan struct{}, 1)} }

// add records due, and kicks the service when it is the new earliest.
func (w *timerWake) add(due time.Time) {
	w.mu.Lock()
	if len(w.dues) >= maxWakeups {
		w.mu.Unlock()
		return
	}
	earliest := len(w.dues) == 0 || due.Before(w.dues[0])
	heap.Push(&w.dues, due)
	w.mu.Unlock()
	if earliest {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// next drops the due times at or before now and returns the earliest of
// the others (ok false when none is left).
func (w *timerWake) next(now time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.dues) > 0 && !w.dues[0].After(now) {
		heap.Pop(&w.dues)
	}
	if len(w.dues) == 0 {
		return time.Time{}, false
	}
	return w.dues[0], true
}

// dueHeap is a min-heap of times (container/heap).
type dueHeap []time.Time

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].Before(h[j]) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(time.Time)) }
func (h *dueHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}
