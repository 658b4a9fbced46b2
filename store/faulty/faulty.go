package faulty

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/sagaflow/sagaflow/store"
)

// ErrInjected is the error of an injected write fault; it wraps
// store.ErrUnavailable.
var ErrInjected = fmt.Errorf("faulty: injected write error: %w", store.ErrUnavailable)

// Store is a store.Store that can be made to fail its writes. Make one
// with Wrap; it is safe for concurrent use.
type Store struct {
	store.Store

	down      atomic.Bool
	failAfter atomic.Int64 // appends left before down switches on; <0: not armed
	pingDown  atomic.Bool  // Ping fails while down

	appends, failed, conflicts, handled atomic.Int64

	mu        sync.Mutex
	committed map[string]bool // handled message IDs of successful appends
	// unanswered maps the handled message IDs of appends that failed
	// without a refusal to their streams: such a commit may have been
	// written (its answer lost with the connection, or its caller gone).
	unanswered map[string][]string
}

var _ store.Store = (*Store)(nil)

// Wrap returns inner with no fault on.
func Wrap(inner store.Store) *Store {
	s := &Store{Store: inner, committed: make(map[string]bool), unanswered: make(map[string][]string)}
	s.failAfter.Store(-1)
	return s
}

// SetDown switches the write fault on or off. While it is on, Append,
// MarkDispatched, DeleteTimers and SaveSnapshot fail with ErrInjected and
// write nothing; reads keep working unless PingDown was asked for.
func (s *Store) SetDown(down bool) {
	s.failAfter.Store(-1)
	s.down.Store(down)
}

// PingDown makes Ping fail while the write fault is on, as a store whose
// server is gone does.
func (s *Store) PingDown(on bool) { s.pingDown.Store(on) }

// FailAfter arms the fault to switch on after n more successful appends.
// n <= 0 switches it on at once.
func (s *Store) FailAfter(n int) {
	if n <= 0 {
		s.SetDown(true)
		return
	}
	s.down.Store(false)
	s.failAfter.Store(int64(n))
}

// Down reports whether the write fault is on.
func (s *Store) Down() bool { return s.down.Load() }

// Stats counts what the wrapper saw.
type Stats struct {
	// Appends is how many appends the wrapped store accepted.
	Appends int64
	// Injected is how many writes failed with ErrInjected.
	Injected int64
	// Conflicts is how many appends the wrapped store refused with
	// store.ErrConcurrency.
	Conflicts int64
	// AlreadyHandled is how many appends it refused with
	// store.ErrAlreadyHandled.
	AlreadyHandled int64
}

// Stats returns the counts so far.
func (s *Store) Stats() Stats {
	return Stats{Appends: s.appends.Load(), Injected: s.failed.Load(), Conflicts: s.conflicts.Load(), AlreadyHandled: s.handled.Load()}
}

// Committed reports whether an append through this wrapper recorded
// message id as handled, or was refused with store.ErrAlreadyHandled
// because the store had recorded it already.
func (s *Store) Committed(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committed[id]
}

// Durable reports whether message id is recorded as handled: Committed
// says so, or an append that named it failed without a refusal and the
// inner store's Handled finds it in that append's stream now (the commit
// was written but its answer was lost). Ask it once the inner store is
// reachable.
func (s *Store) Durable(ctx context.Context, id string) (bool, error) {
	s.mu.Lock()
	committed, streams := s.committed[id], append([]string(nil), s.unanswered[id]...)
	s.mu.Unlock()
	if committed {
		return true, nil
	}
	for _, stream := range streams {
		_, ok, err := s.Store.Handled(ctx, stream, id)
		if err != nil {
			return false, fmt.Errorf("faulty: is %s handled in %s: %w", id, stream, err)
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

// fault reports whether a write must fail now, counting it.
func (s *Store) fault() bool {
	if s.down.Load() {
		s.failed.Add(1)
		return true
	}
	return false
}

// Append implements store.Streams.
func (s *Store) Append(ctx context.Context, c store.Commit) error {
	if s.fault() {
		return fmt.Errorf("append %s v%d: %w", c.Stream, c.Version, ErrInjected)
	}
	err := s.Store.Append(ctx, c)
	switch {
	case err == nil:
		s.appends.Add(1)
		s.mu.Lock()
		for _, id := range c.Handled {
			s.committed[id] = true
		}
		s.mu.Unlock()
		if s.failAfter.Load() > 0 && s.failAfter.Add(-1) == 0 {
			s.down.Store(true)
		}
	case errors.Is(err, store.ErrConcurrency):
		s.conflicts.Add(1)
	case errors.Is(err, store.ErrAlreadyHandled):
		// An earlier append recorded them (perhaps one whose answer was
		// lost with the connection): they are committed.
		s.handled.Add(1)
		s.mu.Lock()
		for _, id := range c.Handled {
			s.committed[id] = true
		}
		s.mu.Unlock()
	case !errors.Is(err, store.ErrInvalidCommit):
		s.mu.Lock()
		for _, id := range c.Handled {
			if !slices.Contains(s.unanswered[id], c.Stream) {
				s.unanswered[id] = append(s.unanswered[id], c.Stream)
			}
		}
		s.mu.Unlock()
	}
	return err
}

// MarkDispatched implements store.Outbox.
func (s *Store) MarkDispatched(ctx context.Context, ids ...string) error {
	if s.fault() {
		return fmt.Errorf("mark %d dispatched: %w", len(ids), ErrInjected)
	}
	return s.Store.MarkDispatched(ctx, ids...)
}

// DeleteTimers implements store.Timers.
func (s *Store) DeleteTimers(ctx context.Context, ids ...string) error {
	if s.fault() {
		return fmt.Errorf("delete %d timers: %w", len(ids), ErrInjected)
	}
	return s.Store.DeleteTimers(ctx, ids...)
}

// SaveSnapshot implements store.Snapshots.
func (s *Store) SaveSnapshot(ctx context.Context, snap store.Snapshot) error {
	if s.fault() {
		return fmt.Errorf("save snapshot %s v%d: %w", snap.Stream, snap.Version, ErrInjected)
	}
	return s.Store.SaveSnapshot(ctx, snap)
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	if s.pingDown.Load() && s.down.Load() {
		return fmt.Errorf("ping: %w", ErrInjected)
	}
	return s.Store.Ping(ctx)
}
