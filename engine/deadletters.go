package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/sagaflow/sagaflow/transport"
)

// ErrDeadLetterNotFound: no dead letter has that message ID.
var ErrDeadLetterNotFound = errors.New("dead letter not found")

// MaxDeadLetterBatch bounds the IDs one replay or discard call takes.
const MaxDeadLetterBatch = 1000

// DeadLetterFilter selects dead letters.
type DeadLetterFilter struct {
	// Queue keeps letters taken from this queue.
	Queue string
	// Type keeps letters whose message has this type.
	Type string
	// Limit caps the result (default 100, at most 10,000).
	Limit int
}

// DeadLetterResult is the outcome of a replay or discard.
type DeadLetterResult struct {
	// Done lists the message IDs replayed or discarded.
	Done []string `json:"done"`
	// Missing lists the IDs asked for that were not dead letters.
	Missing []string `json:"missing,omitempty"`
}

// DeadLetters returns the dead letters that match f, oldest first. Filters
// apply to the oldest 10,000 letters.
func (e *Engine) DeadLetters(ctx context.Context, f DeadLetterFilter) ([]transport.DeadLetter, error) {
	if !e.running.Load() {
		return nil, ErrNotRunning
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	if limit > 10_000 {
		return nil, fmt.Errorf("%w: limit %d: at most 10000", ErrInvalidRequest, limit)
	}
	scan := limit
	if f.Queue != "" || f.Type != "" {
		scan = 10_000
	}
	all, err := e.deps.Transport.DeadLetters(ctx, scan)
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	out := []transport.DeadLetter{}
	for _, dl := range all {
		if (f.Queue == "" || dl.Queue == f.Queue) && (f.Type == "" || dl.Message.Type == f.Type) {
			out = append(out, dl)
			if len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

// DeadLetter returns the dead letter of message id, with its whole
// envelope.
func (e *Engine) DeadLetter(ctx context.Context, id string) (transport.DeadLetter, error) {
	all, err := e.DeadLetters(ctx, DeadLetterFilter{Limit: 10_000})
	if err != nil {
		return transport.DeadLetter{}, err
	}
	for _, dl := range all {
		if dl.Message.ID == id {
			return dl, nil
		}
	}
	return transport.DeadLetter{}, fmt.Errorf("%w: %s", ErrDeadLetterNotFound, id)
}

// ReplayDeadLetters puts the dead letters of the messages in ids back on
// the queue they came from, to be handled again; see
// transport.Transport.ReplayDeadLetters.
func (e *Engine) ReplayDeadLetters(ctx context.Context, ids []string) (DeadLetterResult, error) {
	return e.settleDeadLetters(ctx, "replay", ids, func(t transport.Transport) func(context.Context, []string) ([]string, error) {
		return t.ReplayDeadLetters
	})
}

// DiscardDeadLetters deletes the dead letters of the messages in ids.
func (e *Engine) DiscardDeadLetters(ctx context.Context, ids []string) (DeadLetterResult, error) {
	return e.settleDeadLetters(ctx, "discard", ids, func(t transport.Transport) func(context.Context, []string) ([]string, error) {
		return t.DiscardDeadLetters
	})
}

func (e *Engine) settleDeadLetters(ctx context.Context, op string, ids []string, settle func(transport.Transport) func(context.Context, []string) ([]string, error)) (DeadLetterResult, error) {
	if !e.running.Load() {
		return DeadLetterResult{}, ErrNotRunning
	}
	if len(ids) == 0 {
		return DeadLetterResult{}, fmt.Errorf("%w: no message IDs to %s", ErrInvalidRequest, op)
	}
	if len(ids) > MaxDeadLetterBatch {
		return DeadLetterResult{}, fmt.Errorf("%w: %d message IDs: at most %d per call", ErrInvalidRequest, len(ids), MaxDeadLetterBatch)
	}
	done, err := settle(e.deps.Transport)(ctx, ids)
	res := DeadLetterResult{Done: done}
	if res.Done == nil {
		res.Done = []string{}
	}
	seen := make(map[string]bool, len(done))
	for _, id := range done {
		seen[id] = true
	}
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			res.Missing = append(res.Missing, id)
		}
	}
	if err != nil {
		return res, fmt.Errorf("%s dead letters: %w", op, err)
	}
	e.logger.Info("dead letters settled by an operator", "op", op, "done", len(res.Done), "missing", len(res.Missing))
	return res, nil
}
