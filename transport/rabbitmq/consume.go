package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// session is one Consume call: one AMQP channel with one consumer per
// partition. epoch counts the channel's sessions as the broker sees them:
// it grows when the channel is lost, and a delivery settles only in the
// epoch it was received in.
type session struct {
	t     *Transport
	queue string
	ch    *amqp.Channel
	tags  []string
	parts []*partQueue

	mu       sync.Mutex
	epoch    uint64
	fencing  bool // the channel was lost; its old deliveries are being discarded
	closed   bool // Consume is stopping: nothing settles any more
	lastRecv atomic.Int64
}

// partQueue holds one partition's received deliveries until its dispatcher
// hands them to the handler (at most prefetch of the current epoch, plus
// stale ones being discarded).
type partQueue struct {
	mu     sync.Mutex
	items  []*delivery
	notify chan struct{} // capacity 1
}

func (q *partQueue) push(d *delivery) {
	q.mu.Lock()
	q.items = append(q.items, d)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *partQueue) pop() *delivery {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil
	}
	d := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	return d
}

// Consume delivers queue's messages to h until ctx is done or the
// transport closes; see transport.Transport and the package doc. The queue
// must have been declared by this transport.
func (t *Transport) Consume(ctx context.Context, queue string, prefetch int, h transport.Handler) error {
	if prefetch < 1 {
		return fmt.Errorf("rabbitmq: consume %s: prefetch %d must be at least 1", queue, prefetch)
	}
	if !t.enter() {
		return t.errClosed("consume " + queue)
	}
	defer t.ops.Done()
	if _, ok := t.declared.Load(queue); !ok {
		return fmt.Errorf("rabbitmq: consume %s: %w (declare the queue first)", queue, transport.ErrUnroutable)
	}
	if ctx.Err() != nil {
		return nil
	}
	s, err := t.subscribe(ctx, queue, prefetch)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if t.closed.Load() {
			return t.errClosed("consume " + queue)
		}
		return fmt.Errorf("rabbitmq: consume %s: %w", queue, err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for p, pq := range s.parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.dispatch(ctx, p, pq, done, h)
		}()
	}
	var result error
	select {
	case <-ctx.Done():
	case <-t.stop:
		result = t.errClosed("consume " + queue)
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	close(done)
	wg.Wait()
	t.unsubscribe(s)
	return result
}

// subscribe takes a consume channel, sets its prefetch and starts one
// consumer and one reader per partition.
func (t *Transport) subscribe(ctx context.Context, queue string, prefetch int) (*session, error) {
	if err := t.con.await(ctx, false); err != nil {
		return nil, err
	}
	t.reapDirty() // channels a channel-level recovery may have reopened
	ch, err := t.takeChannel()
	if err != nil {
		return nil, err
	}
	s := &session{t: t, queue: queue, ch: ch}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		t.releaseChannel(ch, nil, false)
		return nil, fmt.Errorf("qos %d: %w", prefetch, err)
	}
	t.sessMu.Lock()
	t.session[s] = struct{}{}
	t.sessMu.Unlock()
	for p := range t.cfg.partitions {
		name := t.partitionQueue(queue, p)
		tag := t.cfg.name + "-" + name + "-" + strconv.FormatUint(t.tagSeq.Add(1), 10)
		deliveries, err := ch.Consume(name, tag, false, false, false, false, nil)
		if err != nil {
			s.mu.Lock()
			s.closed = true
			s.mu.Unlock()
			t.unsubscribe(s)
			return nil, fmt.Errorf("consume %s: %w", name, err)
		}
		s.tags = append(s.tags, tag)
		pq := &partQueue{notify: make(chan struct{}, 1)}
		s.parts = append(s.parts, pq)
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			s.read(p, deliveries, pq)
		}()
	}
	return s, nil
}

// read moves one consumer's deliveries from the library to pq, stamped
// with the epoch they arrived in, until the library closes deliveries
// (consumer cancelled, channel or connection closed for good). During a
// fence and after the session closed it drops them: the broker has them
// back already, or gets them back when the consumer is cancelled.
func (s *session) read(p int, deliveries <-chan amqp.Delivery, pq *partQueue) {
	for {
		var raw amqp.Delivery
		select {
		case d, ok := <-deliveries:
			if !ok {
				return
			}
			raw = d
		case <-s.t.released:
			return
		}
		s.lastRecv.Store(time.Now().UnixNano())
		s.mu.Lock()
		drop := s.fencing || s.closed
		epoch := s.epoch
		s.mu.Unlock()
		if drop {
			continue
		}
		pq.push(&delivery{s: s, p: p, raw: raw, epoch: epoch, attempt: attemptOf(raw)})
	}
}

// dispatch hands partition p's deliveries to h in order until done.
func (s *session) dispatch(ctx context.Context, p int, pq *partQueue, done <-chan struct{}, h transport.Handler) {
	for {
		select {
		case <-done:
			return
		case <-pq.notify:
		}
		for {
			select {
			case <-done:
				return
			default:
			}
			d := pq.pop()
			if d == nil {
				break
			}
			s.mu.Lock()
			stale := d.epoch != s.epoch || s.fencing || s.closed
			s.mu.Unlock()
			if stale {
				continue
			}
			env, err := message.UnmarshalEnvelope(d.raw.Body, s.t.cfg.maxSize)
			if err != nil {
				reason := fmt.Errorf("rabbitmq: undecodable message %q on %s: %w", d.raw.MessageId, s.t.partitionQueue(s.queue, p), err)
				if derr := d.DeadLetter(ctx, reason); derr != nil {
					s.t.log.Error("rabbitmq: dead-letter an undecodable message", "queue", s.queue, "message_id", d.raw.MessageId, "err", derr)
				} else {
					s.t.log.Warn("rabbitmq: dead-lettered an undecodable message", "queue", s.queue, "message_id", d.raw.MessageId, "reason", reason)
				}
				continue
			}
			d.env = withTraceHeaders(env, d.raw.Headers)
			h(ctx, d)
		}
	}
}

// attemptOf is the delivery's attempt number: the attempts before the
// message's last Retry (HeaderPriorAttempts), plus the quorum queue's
// x-delivery-count (returns since) plus one, and at least 2 when the
// broker says it is a redelivery.
func attemptOf(d amqp.Delivery) int {
	n := int(intHeader(d.Headers, HeaderPriorAttempts)) + int(intHeader(d.Headers, "x-delivery-count")) + 1
	if d.Redelivered && n < 2 {
		n = 2
	}
	return n
}

func intHeader(h amqp.Table, key string) int64 {
	switch v := h[key].(type) {
	case int:
		return int64(v)
	case int8:
		return int64(v)
	case int16:
		return int64(v)
	case int32:
		return int64(v)
	case int64:
		return v
	case uint8:
		return int64(v)
	case uint16:
		return int64(v)
	case uint32:
		return int64(v)
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return 0
}

// unsubscribe ends s: it cancels s's consumers and requeues what s left
// unsettled, then keeps the channel for the next Consume. When that fails
// (the connection is down) the channel is parked and cleaned up once the
// connection is back: closing a channel while its connection recovers
// would make the library's recovery fail (see reapDirty).
func (t *Transport) unsubscribe(s *session) {
	t.sessMu.Lock()
	delete(t.session, s)
	t.sessMu.Unlock()
	if t.closed.Load() {
		return // closing the connection requeues everything
	}
	t.releaseChannel(s.ch, s.tags, true)
}

// dirtyChan is a consume channel whose consumers could not be cancelled.
type dirtyChan struct {
	ch   *amqp.Channel
	tags []string
}

// takeChannel returns an idle consume channel or opens one.
func (t *Transport) takeChannel() (*amqp.Channel, error) {
	t.chMu.Lock()
	for len(t.idle) > 0 {
		ch := t.idle[len(t.idle)-1]
		t.idle = t.idle[:len(t.idle)-1]
		if !ch.IsClosed() {
			t.chMu.Unlock()
			return ch, nil
		}
		t.dirty = append(t.dirty, &dirtyChan{ch: ch})
	}
	t.chMu.Unlock()
	ch, err := t.con.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	return ch, nil
}

// releaseChannel cancels tags on ch and requeues its unsettled deliveries
// (requeue), then makes ch idle; on failure it parks ch as dirty.
func (t *Transport) releaseChannel(ch *amqp.Channel, tags []string, requeue bool) {
	if err := cleanChannel(ch, tags, requeue); err != nil {
		t.log.Warn("rabbitmq: could not release a consume channel; retrying when the connection is back", "err", err)
		t.chMu.Lock()
		t.dirty = append(t.dirty, &dirtyChan{ch: ch, tags: tags})
		t.chMu.Unlock()
		return
	}
	t.chMu.Lock()
	t.idle = append(t.idle, ch)
	t.chMu.Unlock()
}

func cleanChannel(ch *amqp.Channel, tags []string, requeue bool) error {
	if ch.IsClosed() {
		return errors.New("channel is closed")
	}
	for _, tag := range tags {
		if err := ch.Cancel(tag, false); err != nil {
			return fmt.Errorf("cancel %s: %w", tag, err)
		}
	}
	if requeue {
		// Tag 0 with multiple: every unsettled delivery of the channel,
		// which belonged to this session only.
		if err := ch.Nack(0, true, true); err != nil {
			return fmt.Errorf("requeue: %w", err)
		}
	}
	return nil
}

// reapDirty retries the release of the parked channels; it runs when the
// consuming connection is open again and before each Consume. A channel
// that still fails stays parked.
func (t *Transport) reapDirty() {
	t.chMu.Lock()
	dirty := t.dirty
	t.dirty = nil
	t.chMu.Unlock()
	for _, d := range dirty {
		if t.closed.Load() {
			return
		}
		// Recovery re-subscribed the consumers; cancel them and requeue
		// what they received.
		t.releaseChannel(d.ch, d.tags, true)
	}
}

// fence runs before the library reconnects a lost consume channel (ch) or
// the whole consuming connection (ch nil). Delivery tags start again at 1
// on the reopened channel, so deliveries from before the loss must never
// be settled through it: fence moves the sessions on to a new epoch
// (settling an older delivery fails with transport.ErrAlreadySettled) and
// discards the old deliveries still coming out of the library's buffers,
// until none has come for fenceQuiet. The broker redelivers all of them.
func (t *Transport) fence(ch *amqp.Channel) {
	t.sessMu.Lock()
	var ss []*session
	for s := range t.session {
		if ch == nil || s.ch == ch {
			ss = append(ss, s)
		}
	}
	t.sessMu.Unlock()
	if len(ss) == 0 {
		return
	}
	start := time.Now()
	for _, s := range ss {
		s.mu.Lock()
		s.epoch++
		s.fencing = true
		s.mu.Unlock()
	}
	for _, s := range ss {
		for {
			last := time.Unix(0, s.lastRecv.Load())
			if last.Before(start) {
				last = start
			}
			if time.Since(last) >= fenceQuiet || time.Since(start) >= fenceMax {
				break
			}
			time.Sleep(fenceQuiet / 5)
		}
		s.mu.Lock()
		s.fencing = false
		s.mu.Unlock()
	}
	t.log.Info("rabbitmq: revoked the deliveries of a lost consume channel", "sessions", len(ss), "took", time.Since(start))
}

// delivery is one received message; see transport.Delivery.
type delivery struct {
	s       *session
	p       int
	raw     amqp.Delivery
	env     message.Envelope
	epoch   uint64
	attempt int
	settled bool // guarded by s.mu
}

func (d *delivery) Envelope() message.Envelope { return d.env }
func (d *delivery) Partition() int             { return d.p }
func (d *delivery) Attempt() int               { return d.attempt }

// checkLocked refuses to settle d twice, after its Consume stopped or
// after its channel was lost. The caller holds d.s.mu.
func (d *delivery) checkLocked() error {
	switch {
	case d.settled:
		return fmt.Errorf("rabbitmq: message %s on %s: %w", d.raw.MessageId, d.s.queue, transport.ErrAlreadySettled)
	case d.s.closed:
		return fmt.Errorf("rabbitmq: message %s on %s: its consumer stopped and the broker requeued it: %w", d.raw.MessageId, d.s.queue, transport.ErrAlreadySettled)
	case d.epoch != d.s.epoch || d.s.fencing:
		return fmt.Errorf("rabbitmq: message %s on %s: the channel was lost and the broker requeued it: %w", d.raw.MessageId, d.s.queue, transport.ErrAlreadySettled)
	}
	return nil
}

// Ack settles the delivery as handled (basic.ack).
func (d *delivery) Ack(context.Context) error {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	if err := d.checkLocked(); err != nil {
		return err
	}
	d.settled = true
	if err := d.s.ch.Ack(d.raw.DeliveryTag, false); err != nil {
		return fmt.Errorf("rabbitmq: ack %s on %s (the broker will redeliver it): %w", d.raw.MessageId, d.s.queue, err)
	}
	return nil
}

// Requeue returns the message to its partition (basic.nack with requeue),
// or dead-letters it with reason when this is delivery number
// DeliveryLimit.
func (d *delivery) Requeue(ctx context.Context, reason error) error {
	if limit := d.s.t.cfg.limit; d.attempt >= limit {
		return d.DeadLetter(ctx, fmt.Errorf("delivery limit %d reached; last error: %s", limit, reasonText(reason)))
	}
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	if err := d.checkLocked(); err != nil {
		return err
	}
	d.settled = true
	if err := d.s.ch.Nack(d.raw.DeliveryTag, false, true); err != nil {
		return fmt.Errorf("rabbitmq: requeue %s on %s (the broker will redeliver it): %w", d.raw.MessageId, d.s.queue, err)
	}
	return nil
}

// Retry publishes the message to the retry queue of the delay (see
// WithRetryDelays), waits for the confirm, then acks the original; the
// broker moves it back to the tail of its partition when the delay is
// over. At the delivery limit it dead-letters the message instead. If the
// publish fails the delivery stays unsettled.
func (d *delivery) Retry(ctx context.Context, delay time.Duration, reason error) error {
	if limit := d.s.t.cfg.limit; d.attempt >= limit {
		return d.DeadLetter(ctx, fmt.Errorf("delivery limit %d reached; last error: %s", limit, reasonText(reason)))
	}
	return d.moveOut(ctx, "retry", func(ctx context.Context) error {
		return d.s.t.publishRetry(ctx, d.raw, d.s.t.partitionQueue(d.s.queue, d.p), d.attempt, delay, reasonText(reason))
	})
}

// DeadLetter publishes the message with reason to the dead-letter exchange,
// waits for the confirm, then acks the original. If the publish fails the
// delivery stays unsettled.
func (d *delivery) DeadLetter(ctx context.Context, reason error) error {
	return d.moveOut(ctx, "dead-letter", func(ctx context.Context) error {
		return d.s.t.publishDeadLetter(ctx, d.raw, d.s.queue, d.attempt, reasonText(reason))
	})
}

// moveOut settles d by publishing a copy elsewhere (publish, confirmed)
// and then acking the original. A crash in between leaves two copies,
// never none; if the publish fails d stays unsettled.
func (d *delivery) moveOut(ctx context.Context, op string, publish func(context.Context) error) error {
	d.s.mu.Lock()
	if err := d.checkLocked(); err != nil {
		d.s.mu.Unlock()
		return err
	}
	d.settled = true
	d.s.mu.Unlock()
	if ctx.Err() != nil {
		// A handler settling as its Consume stops still moves the message.
		ctx = context.WithoutCancel(ctx)
	}
	if err := publish(ctx); err != nil {
		d.s.mu.Lock()
		d.settled = false
		d.s.mu.Unlock()
		return fmt.Errorf("rabbitmq: %s %s on %s: %w", op, d.raw.MessageId, d.s.queue, err)
	}
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	if d.s.closed || d.epoch != d.s.epoch || d.s.fencing {
		// The copy is out; the original comes back and will be handled
		// again: a duplicate, never a lost message.
		return nil
	}
	if err := d.s.ch.Ack(d.raw.DeliveryTag, false); err != nil {
		return fmt.Errorf("rabbitmq: ack %s %s on %s (it will come back): %w", op, d.raw.MessageId, d.s.queue, err)
	}
	return nil
}

func reasonText(err error) string {
	if err == nil {
		return "no reason given"
	}
	return err.Error()
}
