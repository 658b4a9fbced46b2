package actors

import (
	"context"
	"sync"
)

// MarkQueue marks published outbox messages as dispatched in the
// background, so that an actor goes on to its next message as soon as it
// has published its outbox instead of waiting for the store to remove the
// entries (one more durable write, as long as a commit on the embedded
// store). Its workers merge what many actors queued into one MarkDispatched
// call, so the store also sees fewer writes.
//
// Nothing is lost: when the queue is full the caller marks its messages
// itself, and a mark that never reaches the store (a crash, a failed call)
// only leaves the entries pending, so the outbox relay publishes them
// again after its grace period. That is the outbox's at-least-once
// delivery (I4); receivers drop the duplicate by its message ID (I3).
type MarkQueue struct {
	deps    *Deps
	queue   chan []string
	wg      sync.WaitGroup
	closeMu sync.RWMutex // held for reading by Add, for writing by Close
	closed  bool
}

// Bounds of a MarkQueue.
const (
	// markQueueLen bounds the queued Add calls (each a commit's outbox).
	markQueueLen = 4096
	// markWorkers is the number of MarkDispatched calls in flight.
	markWorkers = 2
	// maxMarkBatch bounds the message IDs of one MarkDispatched call.
	maxMarkBatch = 1024
)

// NewMarkQueue starts the workers of a queue over deps' store. Close stops
// them.
func NewMarkQueue(deps *Deps) *MarkQueue { return newMarkQueue(deps, markQueueLen) }

// newMarkQueue is NewMarkQueue with room for queueLen Add calls.
func newMarkQueue(deps *Deps, queueLen int) *MarkQueue {
	q := &MarkQueue{deps: deps, queue: make(chan []string, queueLen)}
	for range markWorkers {
		q.wg.Add(1)
		go q.work()
	}
	return q
}

// Add queues ids to be marked dispatched. When the queue is full or closed
// it marks them itself before it returns.
func (q *MarkQueue) Add(ctx context.Context, ids []string) {
	if len(ids) == 0 {
		return
	}
	q.closeMu.RLock()
	if !q.closed {
		select {
		case q.queue <- ids:
			q.closeMu.RUnlock()
			return
		default:
		}
	}
	q.closeMu.RUnlock()
	q.mark(ctx, ids)
}

// Close lets the workers mark what is queued and waits for them, at most
// until ctx is done (what is left then stays pending for the relay). Add
// after Close marks synchronously.
func (q *MarkQueue) Close(ctx context.Context) {
	q.closeMu.Lock()
	if !q.closed {
		q.closed = true
		close(q.queue)
	}
	q.closeMu.Unlock()
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		q.deps.Logger.Warn("stopping: outbox marks still queued are left to the relay", "err", ctx.Err())
	}
}

// work marks what is queued, merging the queued calls into batches, until
// the queue is closed and empty.
func (q *MarkQueue) work() {
	defer q.wg.Done()
	batch := make([]string, 0, maxMarkBatch)
	for ids := range q.queue {
		batch = append(batch[:0], ids...)
	fill:
		for len(batch) < maxMarkBatch {
			select {
			case more, ok := <-q.queue:
				if !ok {
					break fill
				}
				batch = append(batch, more...)
			default:
				break fill
			}
		}
		q.mark(context.Background(), batch)
		clear(batch)
	}
}

// mark marks ids dispatched, within the settle timeout (whatever the
// caller's ctx: the messages are published, so the caller's giving up
// changes nothing).
func (q *MarkQueue) mark(ctx context.Context, ids []string) {
	sctx, cancel := q.deps.settleCtx()
	defer cancel()
	if err := q.deps.Store.MarkDispatched(sctx, ids...); err != nil {
		q.deps.Logger.WarnContext(ctx, "mark dispatched failed; the outbox relay will publish the messages again", "count", len(ids), "err", err)
	}
}
