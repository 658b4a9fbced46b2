package projection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/readmodel"
	"github.com/sagaflow/sagaflow/transport"
)

// worker applies the deliveries of one partition, one at a time, and
// holds those that arrive ahead of a missing event of their stream.
type worker struct {
	r     *Runner
	in    chan transport.Delivery
	holds map[string]*hold // by stream
	nHeld int
}

// hold is a stream's events that wait for a missing one.
type hold struct {
	events   map[uint64]heldEvent
	deadline time.Time
	// recorded is what the event store says about the missing range,
	// read once per hold (nil: not read yet).
	recorded map[uint64]streamEvent
	local    bool
}

type heldEvent struct {
	d     transport.Delivery
	event any
}

func (w *worker) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	defer w.releaseAll()
	for {
		timer.Reset(w.nextDeadline())
		select {
		case <-ctx.Done():
			return
		case d := <-w.in:
			w.handle(ctx, d)
		case <-timer.C:
			now := time.Now()
			for stream, h := range w.holds {
				if !now.Before(h.deadline) {
					w.fill(ctx, stream, true)
				}
			}
		}
	}
}

// nextDeadline is how long until the earliest hold expires.
func (w *worker) nextDeadline() time.Duration {
	next := time.Hour
	for _, h := range w.holds {
		next = min(next, max(time.Until(h.deadline), 0))
	}
	return next
}

// releaseAll hands every held delivery back (the worker is stopping).
func (w *worker) releaseAll() {
	for stream, h := range w.holds {
		for _, he := range h.events {
			w.r.settle(func(ctx context.Context) error {
				return he.d.Requeue(ctx, errors.New("projection stopped while the event waited for a missing one"))
			})
		}
		w.drop(stream)
	}
}

func (w *worker) drop(stream string) {
	if h, ok := w.holds[stream]; ok {
		w.nHeld -= len(h.events)
		w.r.held.Add(-int64(len(h.events)))
		delete(w.holds, stream)
	}
}

func (w *worker) handle(ctx context.Context, d transport.Delivery) {
	env := d.Envelope()
	if env.Kind != message.KindEvent || env.Sequence == 0 {
		w.park(d, fmt.Errorf("projection %s takes events with a stream sequence, got a %s of type %q with sequence %d", w.r.p.name, env.Kind, env.Type, env.Sequence))
		return
	}
	event, err := w.r.cfg.Source.Registry.DecodeEnvelope(env)
	if err != nil {
		w.park(d, fmt.Errorf("projection %s: %w", w.r.p.name, err))
		return
	}
	stream := StreamOf(env)
	if h, ok := w.holds[stream]; ok {
		if _, dup := h.events[env.Sequence]; dup {
			w.r.duplicates.Add(1)
			w.r.settle(d.Ack)
			return
		}
	}
	if !w.applyDelivery(ctx, stream, d, event) {
		return
	}
	if _, ok := w.holds[stream]; ok {
		w.fill(ctx, stream, false)
	}
}

// applyDelivery applies and settles d; it returns false when d was held
// instead (it is ahead of a missing event) or parked.
func (w *worker) applyDelivery(ctx context.Context, stream string, d transport.Delivery, event any) bool {
	env := d.Envelope()
	_, err := w.r.apply(ctx, stream, env, event)
	switch {
	case err == nil:
		w.r.settle(d.Ack)
		return true
	case errors.Is(err, readmodel.ErrOutOfOrder):
		w.hold(ctx, stream, d, event)
		return false
	default:
		w.fail(d, err)
		return false
	}
}

// fail settles a delivery whose event could not be applied: a handler's
// error or bad input parks it, a store error hands it back for later.
func (w *worker) fail(d transport.Delivery, err error) {
	var he *HandlerError
	if errors.As(err, &he) || errors.Is(err, readmodel.ErrInvalid) {
		w.park(d, err)
		return
	}
	w.r.log.Warn("projection: event not applied, retrying later", "type", d.Envelope().Type, "key", d.Envelope().Key, "err", err)
	w.r.settle(func(ctx context.Context) error { return d.Retry(ctx, w.r.cfg.RetryDelay, err) })
}

// park dead-letters d. It is counted once the transport holds the dead
// letter, so that Status's Parked never runs ahead of the dead letters an
// operator can list; a failed settle is not counted, as the event comes
// back.
func (w *worker) park(d transport.Delivery, reason error) {
	e := d.Envelope()
	w.r.log.Warn("projection: parking event", "message_id", e.ID, "type", e.Type, "key", e.Key, "reason", reason)
	w.r.settle(func(ctx context.Context) error {
		if err := d.DeadLetter(ctx, reason); err != nil {
			return err
		}
		w.r.parked.Add(1)
		return nil
	})
}

func (w *worker) hold(ctx context.Context, stream string, d transport.Delivery, event any) {
	if w.nHeld >= w.r.cfg.MaxHeld {
		reason := fmt.Errorf("projection %s: %s event %d is ahead of a missing one and %d events are held already", w.r.p.name, stream, d.Envelope().Sequence, w.nHeld)
		w.r.settle(func(ctx context.Context) error { return d.Retry(ctx, w.r.cfg.GapWait, reason) })
		return
	}
	h, ok := w.holds[stream]
	if !ok {
		h = &hold{events: make(map[uint64]heldEvent), deadline: time.Now().Add(w.r.cfg.GapWait)}
		w.holds[stream] = h
	}
	h.events[d.Envelope().Sequence] = heldEvent{d: d, event: event}
	h.recorded = nil // the range to look at may have grown
	w.nHeld++
	w.r.held.Add(1)
	w.fill(ctx, stream, false)
}

// maxFillSteps bounds one fill.
const maxFillSteps = 100_000

// fill applies what it can of a stream's held events: those that are
// next, after skipping the missing events that the event store shows will
// never arrive here; when expired, it also applies missing events from the
// event store, and parks the held events when those are not there.
func (w *worker) fill(ctx context.Context, stream string, expired bool) {
	looked := false
	for range maxFillSteps {
		h, ok := w.holds[stream]
		if !ok {
			return
		}
		cp, err := w.r.cfg.ReadModels.Checkpoint(ctx, w.r.p.name, stream)
		if err != nil {
			w.r.log.Warn("projection: read checkpoint failed; trying again later", "stream", stream, "err", err)
			h.deadline = time.Now().Add(w.r.cfg.RetryDelay)
			return
		}
		maxHeld := uint64(0)
		for seq, he := range h.events {
			if seq <= cp {
				w.r.duplicates.Add(1)
				w.r.settle(he.d.Ack)
				delete(h.events, seq)
				w.nHeld--
				w.r.held.Add(-1)
				continue
			}
			maxHeld = max(maxHeld, seq)
		}
		if len(h.events) == 0 {
			w.drop(stream)
			return
		}
		next := cp + 1
		if he, ok := h.events[next]; ok {
			delete(h.events, next)
			w.nHeld--
			w.r.held.Add(-1)
			if !w.applyDelivery(ctx, stream, he.d, he.event) {
				return
			}
			continue
		}
		if h.recorded == nil || (expired && h.local && !looked) {
			looked = true
			if err := w.lookUp(ctx, stream, h, next, maxHeld-1); err != nil {
				w.r.log.Warn("projection: event store lookup failed; trying again later", "stream", stream, "err", err)
				h.deadline = time.Now().Add(w.r.cfg.RetryDelay)
				return
			}
		}
		se, recorded := h.recorded[next]
		switch {
		case recorded && (!se.published || !w.r.p.Handles(se.event)):
			// It will never be delivered here: only move the checkpoint.
			if _, err := w.r.apply(ctx, stream, skipEnvelope(stream, next), nil); err != nil && !errors.Is(err, readmodel.ErrOutOfOrder) {
				w.r.log.Warn("projection: skip of an unpublished event failed; trying again later", "stream", stream, "seq", next, "err", err)
				h.deadline = time.Now().Add(w.r.cfg.RetryDelay)
				return
			}
		case recorded && expired:
			if _, err := w.r.apply(ctx, stream, se.env, se.event); err != nil && !errors.Is(err, readmodel.ErrOutOfOrder) {
				var he *HandlerError
				if errors.As(err, &he) {
					w.parkHeld(stream, h, err)
					return
				}
				w.r.log.Warn("projection: apply from the event store failed; trying again later", "stream", stream, "seq", next, "err", err)
				h.deadline = time.Now().Add(w.r.cfg.RetryDelay)
				return
			}
		case expired:
			w.parkHeld(stream, h, fmt.Errorf("projection %s: %s events %d..%d did not arrive within %v and are not in the event store", w.r.p.name, stream, next, minHeld(h)-1, w.r.cfg.GapWait))
			return
		default:
			return // wait for it
		}
	}
}

// lookUp reads what the event store recorded for stream in [from, to].
func (w *worker) lookUp(ctx context.Context, stream string, h *hold, from, to uint64) error {
	evs, local, err := w.r.cfg.Source.events(ctx, stream, from, to)
	if err != nil {
		return err
	}
	h.local = local
	h.recorded = make(map[uint64]streamEvent, len(evs))
	for _, se := range evs {
		h.recorded[se.seq] = se
	}
	return nil
}

func minHeld(h *hold) uint64 {
	m := ^uint64(0)
	for seq := range h.events {
		m = min(m, seq)
	}
	return m
}

func (w *worker) parkHeld(stream string, h *hold, reason error) {
	for _, he := range h.events {
		w.park(he.d, reason)
	}
	w.drop(stream)
}
