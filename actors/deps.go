package actors

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/telemetry"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/workflows"
)

// Deps is what every actor and service of this package needs. The engine
// builds one and shares it.
type Deps struct {
	// Store keeps streams, outbox and timers.
	Store store.Store
	// Transport moves messages.
	Transport transport.Transport
	// Registry maps message types to Go types.
	Registry *message.Registry
	// Logger receives structured logs.
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// SagaQueue is where replies, timers and control messages for sagas go.
	SagaQueue string
	// Source names this engine as the sender of its messages.
	Source string
	// Workflows finds a workflow definition by name and version.
	Workflows func(name string, version int) (workflows.Workflow, bool)
	// CommitAttempts bounds how often one delivery's commit is tried on
	// conflicts and store errors before the delivery is handed back to the
	// transport for a delayed retry (default 8).
	CommitAttempts int
	// RetryDelay is the delay of the first delayed retry of a delivery
	// whose commit kept failing; it doubles with each delivery, up to
	// MaxRetryDelay (defaults 1s and 2m).
	RetryDelay, MaxRetryDelay time.Duration
	// SettleTimeout bounds acks, requeues and publishes (default 10s).
	SettleTimeout time.Duration
	// Sealer, when set, encrypts the personal fields of the payloads
	// aggregates store and decrypts them when they are read (see
	// package shred and aggregate_load.go).
	Sealer Sealer

	// forgetEpoch counts Forget calls in this process: an aggregate actor
	// loaded before the latest one reloads before its next command.
	forgetEpoch atomic.Uint64
	// Breakers, when set, hold sagas back from services whose circuit is
	// open (see Breakers).
	Breakers *Breakers
	// Telemetry makes the saga and aggregate spans and counts the saga
	// metrics (nil: none; trace context still propagates, W3C).
	Telemetry *telemetry.Instruments
	// Marks, when set, marks published outbox messages dispatched in the
	// background (see MarkQueue); nil marks them before dispatch returns.
	Marks *MarkQueue

	// handoff holds the sagas createSaga just committed, for their actors
	// (see saga_handoff.go).
	handoff sagaHandoff

	// wake is the timer service's wake-up, told of each timer this
	// process commits (see TimerService).
	wake atomic.Pointer[timerWake]
}

// timersSet tells the timer service, if one runs, of timers just
// committed, so that it fires them on time without polling the store
// often.
func (d *Deps) timersSet(timers []store.Timer) {
	w := d.wake.Load()
	if w == nil {
		return
	}
	for _, t := range timers {
		w.add(t.DueAt)
	}
}

func (d *Deps) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d *Deps) commitAttempts() int {
	if d.CommitAttempts > 0 {
		return d.CommitAttempts
	}
	return 8
}

func (d *Deps) settleCtx() (context.Context, context.CancelFunc) {
	t := d.SettleTimeout
	if t <= 0 {
		t = 10 * time.Second
	}
	return context.WithTimeout(context.Background(), t)
}

// backoff returns the wait before retry n (from 1) of a failed commit:
// 10ms doubling to 1s, with full jitter.
func backoff(n int) time.Duration {
	d := 10 * time.Millisecond << min(n-1, 7)
	if d > time.Second {
		d = time.Second
	}
	return time.Duration(rand.Int64N(int64(d)) + 1)
}

// sleep waits d or until ctx is done; it reports whether the wait ran out.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// transportNotReady returns why the transport cannot publish now (its
// RabbitMQ publish connection recovering, or blocked by the broker's
// memory or disk alarm), or nil when it can or cannot tell. A consume
// connection that is recovering does not stop publishing.
func (d *Deps) transportNotReady() error {
	return transport.PublishReady(d.Transport)
}

// dispatch publishes committed outbox messages and marks those the
// transport took as dispatched (on d.Marks, when set, in the background).
// A message that fails to publish stays pending for the relay. When the transport says it is not ready, dispatch
// leaves them all to the relay at once: each publish would wait out the
// transport's publish timeout, and the caller (a saga start, an actor
// with deliveries waiting) with it.
func (d *Deps) dispatch(ctx context.Context, msgs []message.Envelope) {
	if len(msgs) == 0 {
		return
	}
	if err := d.transportNotReady(); err != nil {
		d.Logger.WarnContext(ctx, "transport not ready; the outbox relay will publish", "messages", len(msgs), "err", err)
		return
	}
	sent := make([]string, 0, len(msgs))
	for _, m := range msgs {
		if err := d.Transport.Publish(ctx, m); err != nil {
			if unpublishable(err) {
				d.Logger.ErrorContext(ctx, "message can never be published; removed from the outbox", "message_id", m.ID, "type", m.Type, "destination", m.Destination, "saga_id", m.SagaID, "err", err)
				sent = append(sent, m.ID)
				continue
			}
			d.Logger.WarnContext(ctx, "publish failed; the outbox relay will retry", "message_id", m.ID, "type", m.Type, "err", err)
			continue
		}
		sent = append(sent, m.ID)
	}
	if len(sent) == 0 {
		return
	}
	if d.Marks != nil {
		d.Marks.Add(ctx, sent)
		return
	}
	if err := d.Store.MarkDispatched(ctx, sent...); err != nil {
		d.Logger.WarnContext(ctx, "mark dispatched failed; messages may be published again", "count", len(sent), "err", err)
	}
}

// deadLetter parks a delivery with reason, logging if even that fails.
func (d *Deps) deadLetter(dl transport.Delivery, reason error) {
	ctx, cancel := d.settleCtx()
	defer cancel()
	e := dl.Envelope()
	d.Logger.WarnContext(d.logCtx(dl), "dead-lettering message", "message_id", e.ID, "type", e.Type, "key", e.Key, "reason", reason)
	if err := dl.DeadLetter(ctx, reason); err != nil {
		d.Logger.ErrorContext(d.logCtx(dl), "dead-letter failed", "message_id", e.ID, "err", err)
	}
}

// ack settles a delivery as handled, logging a failure (the message will
// then be redelivered and recognised as handled).
func (d *Deps) ack(dl transport.Delivery) {
	ctx, cancel := d.settleCtx()
	defer cancel()
	if err := dl.Ack(ctx); err != nil {
		d.Logger.WarnContext(d.logCtx(dl), "ack failed; the message will be redelivered", "message_id", dl.Envelope().ID, "err", err)
	}
}

// retryLater hands a delivery whose handling kept failing in place back to
// the transport, to be delivered again after a delay that grows with its
// attempts (so that a store outage does not burn the delivery limit in
// seconds); at the delivery limit the transport dead-letters it.
func (d *Deps) retryLater(dl transport.Delivery, reason error) {
	ctx, cancel := d.settleCtx()
	defer cancel()
	delay := backoffDelay(dl.Attempt(), d.RetryDelay, d.MaxRetryDelay)
	e := dl.Envelope()
	d.Logger.WarnContext(d.logCtx(dl), "handing message back for a delayed retry", "message_id", e.ID, "type", e.Type, "key", e.Key, "attempt", dl.Attempt(), "delay", delay, "reason", reason)
	if err := dl.Retry(ctx, delay, reason); err != nil {
		d.Logger.ErrorContext(d.logCtx(dl), "delayed retry failed; the message will be redelivered", "message_id", e.ID, "err", err)
	}
}

// backoffDelay is first doubled attempt-1 times, at most most.
func backoffDelay(attempt int, first, most time.Duration) time.Duration {
	if first <= 0 {
		first = time.Second
	}
	if most <= 0 {
		most = 2 * time.Minute
	}
	delay := first
	for i := 1; i < attempt && delay < most; i++ {
		delay *= 2
	}
	return min(delay, most)
}

// requeue hands a delivery back for redelivery.
func (d *Deps) requeue(dl transport.Delivery, reason error) {
	ctx, cancel := d.settleCtx()
	defer cancel()
	if err := dl.Requeue(ctx, reason); err != nil {
		d.Logger.ErrorContext(d.logCtx(dl), "requeue failed", "message_id", dl.Envelope().ID, "err", err)
	}
}
