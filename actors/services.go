package actors

import (
	"context"
	"time"
)

// batchLimit bounds what one round of the relay or the timer service reads.
const batchLimit = 256

// maxRounds bounds the rounds one tick runs before yielding to the ticker.
const maxRounds = 64

// OutboxRelay publishes outbox messages that were committed but not
// confirmed as published: after a crash, or when the publish right after
// the commit failed (I4).
type OutboxRelay struct {
	deps *Deps
	// Interval is how often it looks (default 1s).
	Interval time.Duration
	// Grace is how old an entry must be before the relay takes it, so that
	// it does not race the actor that just committed it (default 2s).
	Grace time.Duration
}

// NewOutboxRelay returns a relay over deps' store and transport.
func NewOutboxRelay(deps *Deps) *OutboxRelay {
	return &OutboxRelay{deps: deps, Interval: time.Second, Grace: 2 * time.Second}
}

// Run sweeps once at once (taking everything, as after a restart), then
// every Interval, until ctx is done.
func (r *OutboxRelay) Run(ctx context.Context) error {
	r.sweep(ctx, r.deps.now())
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.sweep(ctx, r.deps.now().Add(-r.Grace))
		}
	}
}

// Flush publishes every pending outbox entry once, however young: the last
// sweep of a graceful stop, after the actors have stopped.
func (r *OutboxRelay) Flush(ctx context.Context) { r.sweep(ctx, r.deps.now()) }

func (r *OutboxRelay) sweep(ctx context.Context, olderThan time.Time) {
	for range maxRounds {
		entries, err := r.deps.Store.PendingOutbox(ctx, olderThan, batchLimit)
		if err != nil {
			if ctx.Err() == nil {
				r.deps.Logger.Warn("outbox relay: read pending failed", "err", err)
			}
			return
		}
		if len(entries) == 0 {
			return
		}
		published := make([]string, 0, len(entries))
		for _, e := range entries {
			// A transport that is not ready (recovering, blocked by the
			// broker) would make each publish wait out its timeout: stop
			// the sweep; the next one tries again.
			if err := r.deps.transportNotReady(); err != nil {
				r.deps.Logger.Warn("outbox relay: transport not ready; sweep stopped", "pending", len(entries)-len(published), "err", err)
				break
			}
			if err := r.deps.Transport.Publish(ctx, e.Message); err != nil {
				if unpublishable(err) {
					r.deps.Logger.Error("outbox relay: message can never be published; removed from the outbox", "message_id", e.ID, "type", e.Message.Type, "stream", e.Stream, "version", e.Version, "err", err)
					published = append(published, e.ID)
					continue
				}
				r.deps.Logger.Warn("outbox relay: publish failed", "message_id", e.ID, "err", err)
				continue
			}
			published = append(published, e.ID)
		}
		if len(published) == 0 {
			return
		}
		if err := r.deps.Store.MarkDispatched(ctx, published...); err != nil {
			r.deps.Logger.Warn("outbox relay: mark dispatched failed", "err", err)
			return
		}
		if len(entries) < batchLimit {
			return
		}
	}
}

// TimerService fires durable timers when they are due (I5): it publishes
// each timer's message and then deletes the timer. A crash in between
// fires it again; the receiver recognises the message ID.
type TimerService struct {
	deps *Deps
	// Interval is how often it looks in the store for timers it was not
	// told of: those set before a restart or by another engine process
	// (default 1s). Timers this process sets wake it when they fall due.
	Interval time.Duration
	// MinGap is the least time between two looks at the store (default
	// 10ms), which bounds the store reads when many timers fall due one
	// after another.
	MinGap time.Duration
}

// NewTimerService returns a timer service over deps' store and transport.
func NewTimerService(deps *Deps) *TimerService {
	return &TimerService{deps: deps, Interval: time.Second, MinGap: 10 * time.Millisecond}
}

// Run fires due timers until ctx is done: when a timer this process set
// falls due, and every Interval.
func (s *TimerService) Run(ctx context.Context) error {
	w := newTimerWake()
	s.deps.wake.Store(w)
	defer s.deps.wake.Store(nil)
	interval, gap := s.Interval, s.MinGap
	if interval <= 0 {
		interval = time.Second
	}
	if gap <= 0 {
		gap = 10 * time.Millisecond
	}
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s.fire(ctx)
		lookedAt := time.Now()
		pollAt := lookedAt.Add(interval)
	wait:
		for {
			at := pollAt
			if due, ok := w.next(s.deps.now()); ok {
				if d := time.Now().Add(max(due.Sub(s.deps.now()), 0)); d.Before(at) {
					at = d
				}
			}
			t.Reset(max(time.Until(at), time.Until(lookedAt.Add(gap)), 0))
			select {
			case <-ctx.Done():
				return nil
			case <-w.kick:
				// A new earliest due time: wait again (Reset drops a
				// pending tick since Go 1.23).
			case <-t.C:
				break wait
			}
		}
	}
}

func (s *TimerService) fire(ctx context.Context) {
	for range maxRounds {
		timers, err := s.deps.Store.DueTimers(ctx, s.deps.now(), batchLimit)
		if err != nil {
			if ctx.Err() == nil {
				s.deps.Logger.Warn("timer service: read due timers failed", "err", err)
			}
			return
		}
		if len(timers) == 0 {
			return
		}
		fired := make([]string, 0, len(timers))
		for _, t := range timers {
			if err := s.deps.transportNotReady(); err != nil { // as in the relay's sweep
				s.deps.Logger.Warn("timer service: transport not ready; due timers wait", "err", err)
				break
			}
			if err := s.deps.Transport.Publish(ctx, t.Message); err != nil {
				s.deps.Logger.Warn("timer service: publish failed", "timer_id", t.ID, "err", err)
				continue
			}
			fired = append(fired, t.ID)
		}
		if len(fired) == 0 {
			return
		}
		if err := s.deps.Store.DeleteTimers(ctx, fired...); err != nil {
			s.deps.Logger.Warn("timer service: delete fired timers failed", "err", err)
			return
		}
		if len(timers) < batchLimit {
			return
		}
	}
}
