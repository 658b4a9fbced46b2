package inmem

import (
	"context"
	"errors"
	"fmt"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// ReplayDeadLetters moves the dead letters of the messages in ids back to
// the partition of their key on the queue they came from, at its back, as
// new messages (Attempt starts again at 1); see transport.Transport. A
// letter whose queue no longer exists, or whose message could not be
// decoded when it was dead-lettered (its bytes are not kept), stays and is
// reported in the error.
func (t *Transport) ReplayDeadLetters(ctx context.Context, ids []string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("inmem: replay dead letters: %w", err)
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return nil, fmt.Errorf("inmem: replay dead letters: %w", transport.ErrClosed)
	}
	var errs []error
	moved := t.takeDeadLetters(ids, func(dl transport.DeadLetter) bool {
		q, ok := t.queues[dl.Queue]
		if !ok {
			errs = append(errs, fmt.Errorf("replay %s: queue %q: %w", dl.Message.ID, dl.Queue, transport.ErrUnroutable))
			return false
		}
		data, err := message.MarshalEnvelope(dl.Message, t.cfg.maxSize)
		if err != nil {
			errs = append(errs, fmt.Errorf("replay %s: the message was not decodable when dead-lettered and its bytes are not kept: %w", dl.Message.ID, err))
			return false
		}
		q.parts[transport.Partition(dl.Message.Key, t.cfg.partitions)].push(&item{data: data, id: dl.Message.ID})
		return true
	})
	if err := errors.Join(errs...); err != nil {
		return moved, fmt.Errorf("inmem: replay dead letters: %w", err)
	}
	return moved, nil
}

// DiscardDeadLetters removes the dead letters of the messages in ids; see
// transport.Transport.
func (t *Transport) DiscardDeadLetters(ctx context.Context, ids []string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("inmem: discard dead letters: %w", err)
	}
	return t.takeDeadLetters(ids, func(transport.DeadLetter) bool { return true }), nil
}

// takeDeadLetters removes, oldest first, every dead letter whose message
// ID is in ids and for which take returns true, and returns their IDs (each
// once).
func (t *Transport) takeDeadLetters(ids []string, take func(transport.DeadLetter) bool) []string {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	t.deadMu.Lock()
	defer t.deadMu.Unlock()
	var taken []string
	seen := map[string]bool{}
	keep := make([]transport.DeadLetter, 0, len(t.dead.buf))
	for i := range t.dead.buf {
		dl := t.dead.buf[(t.dead.head+i)%len(t.dead.buf)]
		if want[dl.Message.ID] && take(dl) {
			if !seen[dl.Message.ID] {
				seen[dl.Message.ID] = true
				taken = append(taken, dl.Message.ID)
			}
			continue
		}
		keep = append(keep, dl)
	}
	// The ring restarts, oldest first, with what is left.
	t.dead.buf, t.dead.head = keep, 0
	return taken
}
