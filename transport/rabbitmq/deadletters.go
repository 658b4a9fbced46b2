package rabbitmq

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// Headers of a dead letter published by the transport.
const (
	HeaderReason         = "reason"
	HeaderQueue          = "queue"
	HeaderAttempts       = "attempts"
	HeaderDeadLetteredAt = "dead-lettered-at" // Unix milliseconds
	// HeaderPriorAttempts, on a message moved to a retry queue, counts its
	// deliveries before the move; Delivery.Attempt goes on from there.
	HeaderPriorAttempts = "sagaflow-prior-attempts"
	// HeaderRetryReason, on a message moved to a retry queue, says why.
	HeaderRetryReason = "retry-reason"
)

// copyOf is a publishing of raw's message with raw's headers, except those
// the broker keeps per queue (x-delivery-count, x-death), which must not
// follow the copy, plus extra.
func copyOf(raw amqp.Delivery, extra amqp.Table) amqp.Publishing {
	headers := amqp.Table{}
	for k, v := range raw.Headers {
		if k != "x-delivery-count" && k != "x-death" {
			headers[k] = v
		}
	}
	for k, v := range extra {
		headers[k] = v
	}
	return amqp.Publishing{
		Headers:      headers,
		ContentType:  raw.ContentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    raw.MessageId,
		Type:         raw.Type,
		Timestamp:    raw.Timestamp,
		Body:         raw.Body,
	}
}

// publishRetry moves a copy of raw to the retry queue that serves delay,
// routed back to partitionQueue when it expires, and waits for the
// broker's confirm.
func (t *Transport) publishRetry(ctx context.Context, raw amqp.Delivery, partitionQueue string, attempts int, delay time.Duration, reason string) error {
	msg := copyOf(raw, amqp.Table{HeaderPriorAttempts: int64(attempts), HeaderRetryReason: reason})
	return t.publish(ctx, t.retryName(t.retryDelay(delay)), partitionQueue, true, msg)
}

// publishDeadLetter parks a copy of raw, with the reason, in the
// dead-letter queue and waits for the broker's confirm.
func (t *Transport) publishDeadLetter(ctx context.Context, raw amqp.Delivery, queue string, attempts int, reason string) error {
	msg := copyOf(raw, amqp.Table{
		HeaderReason:         reason,
		HeaderQueue:          queue,
		HeaderAttempts:       int64(attempts),
		HeaderDeadLetteredAt: time.Now().UnixMilli(),
	})
	return t.publish(ctx, t.deadExchange(), queue, true, msg)
}

// browseQuiet ends a browse of the dead letters when nothing more comes.
const browseQuiet = 250 * time.Millisecond

// DeadLetters returns up to limit dead letters (at most 10,000 when limit
// <= 0 or larger), oldest first. It browses the dead-letter queue without
// removing anything: it consumes up to limit messages on a dedicated
// channel without acking them, then cancels and requeues them all, which
// puts them back in their order. While it runs, a concurrent browse or
// replay sees the letters it holds as missing.
func (t *Transport) DeadLetters(ctx context.Context, limit int) ([]transport.DeadLetter, error) {
	if limit <= 0 || limit > 10_000 {
		limit = 10_000
	}
	if !t.enter() {
		return nil, t.errClosed("dead letters")
	}
	defer t.ops.Done()
	ctx, cancel := context.WithTimeout(ctx, t.cfg.publishTimeout)
	defer cancel()
	if err := t.con.await(ctx, false); err != nil {
		return nil, err
	}
	ch, err := t.takeChannel()
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: dead letters: %w", err)
	}
	// Stop at limit, or when nothing came for browseQuiet (the queue's
	// message count is no help: the requeues of a browse that just ended
	// may not be counted yet).
	if err := ch.Qos(min(limit, 65535), 0, false); err != nil {
		t.releaseChannel(ch, nil, false)
		return nil, fmt.Errorf("rabbitmq: dead letters: qos: %w", err)
	}
	tag := t.cfg.name + "-browse-" + fmt.Sprint(t.tagSeq.Add(1))
	deliveries, err := ch.Consume(t.DeadLetterQueue(), tag, false, false, false, false, nil)
	if err != nil {
		t.releaseChannel(ch, nil, false)
		return nil, fmt.Errorf("rabbitmq: dead letters: consume: %w", err)
	}
	// The consumer's deliveries are read until the library closes them
	// (after the cancel), so that its buffer goroutine ends.
	var (
		mu    sync.Mutex
		out   []transport.DeadLetter
		last  = time.Now()
		full  = make(chan struct{})
		ended = make(chan struct{})
	)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer close(ended)
		for {
			var d amqp.Delivery
			select {
			case got, ok := <-deliveries:
				if !ok {
					return
				}
				d = got
			case <-t.released:
				return
			}
			mu.Lock()
			if len(out) < limit {
				out = append(out, t.deadLetterOf(d))
				last = time.Now()
				if len(out) == limit {
					close(full)
				}
			}
			mu.Unlock()
		}
	}()
	tick := time.NewTicker(browseQuiet / 5)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-full:
			waiting = false
		case <-ended:
			waiting = false
		case <-ctx.Done():
			waiting = false
		case <-tick.C:
			mu.Lock()
			waiting = time.Since(last) < browseQuiet
			mu.Unlock()
		}
	}
	t.releaseChannel(ch, []string{tag}, true)
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(out), nil
}

// deadLetterOf reads a dead letter: the transport's own headers, or the
// broker's x-death header for messages the broker dead-lettered (delivery
// limit reached by returns without a reason).
func (t *Transport) deadLetterOf(d amqp.Delivery) transport.DeadLetter {
	dl := transport.DeadLetter{At: d.Timestamp}
	env, err := message.UnmarshalEnvelope(d.Body, max(t.cfg.maxSize, len(d.Body)))
	if err != nil {
		env = message.Envelope{ID: d.MessageId, Type: d.Type}
	}
	dl.Message = env
	if r, ok := d.Headers[HeaderReason].(string); ok {
		dl.Reason = r
		dl.Queue, _ = d.Headers[HeaderQueue].(string)
		dl.Attempts = int(intHeader(d.Headers, HeaderAttempts))
		if ms := intHeader(d.Headers, HeaderDeadLetteredAt); ms > 0 {
			dl.At = time.UnixMilli(ms)
		}
		return dl
	}
	if deaths, ok := d.Headers["x-death"].([]interface{}); ok && len(deaths) > 0 {
		if death, ok := deaths[0].(amqp.Table); ok {
			why, _ := death["reason"].(string)
			q, _ := death["queue"].(string)
			if i := strings.LastIndexByte(q, '.'); i > 0 {
				q = q[:i]
			}
			q = strings.TrimPrefix(q, t.cfg.name+".")
			dl.Queue = q
			dl.Reason = fmt.Sprintf("dead-lettered by the broker: %s (deliveries returned without a reason, e.g. by consumers that stopped)", why)
			if at, ok := death["time"].(time.Time); ok {
				dl.At = at
			}
		}
	}
	dl.Attempts = int(intHeader(d.Headers, "x-delivery-count"))
	if dl.Reason == "" {
		dl.Reason = "unknown (no reason header)"
	}
	return dl
}
