package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/transport"
)

// settleScanMax bounds one pass over the dead-letter queue by
// ReplayDeadLetters or DiscardDeadLetters.
const settleScanMax = 5 * time.Minute

// ReplayDeadLetters publishes a copy of each dead letter of the messages
// in ids to the partition queue it came from (through the direct
// exchange, so an event goes back to the one subscriber that dead-lettered
// it, not to every queue bound to its type), waits for the broker's
// confirm, and only then removes the letter from the dead-letter queue. The
// copy carries none of the dead-letter or retry headers, so its Attempt
// starts again at 1. A crash in between leaves the message both queued and
// dead-lettered: a duplicate, which consumers absorb (I3). Like
// DeadLetters, it passes over the dead-letter queue once; letters held by a
// concurrent browse are not seen. See transport.Transport.
func (t *Transport) ReplayDeadLetters(ctx context.Context, ids []string) ([]string, error) {
	return t.settleDeadLetters(ctx, "replay", ids, func(ctx context.Context, d amqp.Delivery, dl transport.DeadLetter) error {
		if dl.Queue == "" {
			return fmt.Errorf("replay %s: the dead letter does not say which queue it came from", dl.Message.ID)
		}
		msg := replayCopy(d)
		q := t.partitionQueue(dl.Queue, transport.Partition(dl.Message.Key, t.cfg.partitions))
		if err := t.publish(ctx, t.directExchange(), q, true, msg); err != nil {
			return fmt.Errorf("replay %s to %s: %w", dl.Message.ID, q, err)
		}
		return nil
	})
}

// replayCopy is a publishing of a dead letter's message without the
// headers that count or explain its past deliveries: the broker's (x-*),
// the dead-letter headers and the retry headers (sagaflow-*, retry-*).
func replayCopy(d amqp.Delivery) amqp.Publishing {
	headers := amqp.Table{}
	for k, v := range d.Headers {
		switch {
		case strings.HasPrefix(k, "x-"), strings.HasPrefix(k, "sagaflow-"), strings.HasPrefix(k, "retry-"):
		case k == HeaderReason, k == HeaderQueue, k == HeaderAttempts, k == HeaderDeadLetteredAt:
		default:
			headers[k] = v
		}
	}
	return amqp.Publishing{
		Headers:      headers,
		ContentType:  d.ContentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    d.MessageId,
		Type:         d.Type,
		Timestamp:    time.Now(),
		Body:         d.Body,
	}
}

// DiscardDeadLetters removes the dead letters of the messages in ids from
// the dead-letter queue. See transport.Transport.
func (t *Transport) DiscardDeadLetters(ctx context.Context, ids []string) ([]string, error) {
	return t.settleDeadLetters(ctx, "discard", ids, func(context.Context, amqp.Delivery, transport.DeadLetter) error { return nil })
}

// settleDeadLetters consumes the dead-letter queue without acking, on a
// dedicated channel, until nothing more comes for browseQuiet; each letter
// of a message in ids is passed to act and acked (removed) when act
// succeeds. Every other letter, and one whose act failed, is requeued when
// the pass ends, which keeps their order.
func (t *Transport) settleDeadLetters(ctx context.Context, op string, ids []string, act func(context.Context, amqp.Delivery, transport.DeadLetter) error) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	if !t.enter() {
		return nil, t.errClosed(op + " dead letters")
	}
	defer t.ops.Done()
	ctx, cancel := context.WithTimeout(ctx, settleScanMax)
	defer cancel()
	wctx, wcancel := context.WithTimeout(ctx, t.cfg.publishTimeout)
	err := t.con.await(wctx, false)
	wcancel()
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: %s dead letters: %w", op, err)
	}
	ch, err := t.takeChannel()
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: %s dead letters: %w", op, err)
	}
	if err := ch.Qos(10_000, 0, false); err != nil {
		t.releaseChannel(ch, nil, false)
		return nil, fmt.Errorf("rabbitmq: %s dead letters: qos: %w", op, err)
	}
	tag := t.cfg.name + "-" + op + "-" + fmt.Sprint(t.tagSeq.Add(1))
	deliveries, err := ch.Consume(t.DeadLetterQueue(), tag, false, false, false, false, nil)
	if err != nil {
		t.releaseChannel(ch, nil, false)
		return nil, fmt.Errorf("rabbitmq: %s dead letters: consume: %w", op, err)
	}
	var (
		done []string
		seen = map[string]bool{}
		errs []error
	)
	quiet := time.NewTimer(browseQuiet)
	defer quiet.Stop()
	open := true
scan:
	for len(seen) < len(want) {
		select {
		case d, ok := <-deliveries:
			if !ok {
				open = false
				break scan
			}
			quiet.Reset(browseQuiet)
			dl := t.deadLetterOf(d)
			if !want[dl.Message.ID] {
				continue // requeued when the pass ends
			}
			if err := act(ctx, d, dl); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := d.Ack(false); err != nil {
				errs = append(errs, fmt.Errorf("remove %s from the dead letters: %w", dl.Message.ID, err))
				continue
			}
			if !seen[dl.Message.ID] {
				seen[dl.Message.ID] = true
				done = append(done, dl.Message.ID)
			}
		case <-quiet.C:
			break scan
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
			break scan
		case <-t.released:
			errs = append(errs, transport.ErrClosed)
			break scan
		}
	}
	t.releaseChannel(ch, []string{tag}, true)
	if open {
		// Read what the library still buffers until it closes the
		// channel after the cancel, so its goroutine ends; those letters
		// were requeued by the release.
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			for {
				select {
				case _, ok := <-deliveries:
					if !ok {
						return
					}
				case <-t.released:
					return
				}
			}
		}()
	}
	if err := errors.Join(errs...); err != nil {
		return done, fmt.Errorf("rabbitmq: %s dead letters: %w", op, err)
	}
	return done, nil
}
