package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/transport"
)

// partitionQueue is the broker's name of queue's partition p: the
// transport's name, the queue's and the partition's, so that deployments
// with different names share a vhost without sharing queues.
func (t *Transport) partitionQueue(queue string, p int) string {
	return t.cfg.name + "." + queue + "." + strconv.Itoa(p)
}

// eventKey is the topic routing key of an event of typ on partition p.
func eventKey(typ string, p int) string { return typ + "." + strconv.Itoa(p) }

// queueArgs are the arguments of every partition queue.
func (t *Transport) queueArgs() amqp.Table {
	return amqp.Table{
		"x-queue-type":             "quorum",
		"x-single-active-consumer": true,
		"x-delivery-limit":         int64(t.cfg.limit),
		"x-dead-letter-exchange":   t.deadExchange(),
		"x-dead-letter-strategy":   "at-least-once",
		"x-overflow":               "reject-publish",
	}
}

// withTopo runs f on the topology channel, one caller at a time, once the
// consuming connection is open. The declarations are recorded by the
// library on this long-lived channel and declared again after a reconnect.
func (t *Transport) withTopo(ctx context.Context, f func(ch *amqp.Channel) error) error {
	if !t.enter() {
		return t.errClosed("declare")
	}
	defer t.ops.Done()
	if err := t.con.await(ctx, false); err != nil {
		return err
	}
	t.topoMu.Lock()
	defer t.topoMu.Unlock()
	if t.topo == nil {
		ch, err := t.con.conn.Channel()
		if err != nil {
			return fmt.Errorf("open topology channel: %w", err)
		}
		t.topo = ch
	}
	return f(t.topo)
}

// declareShared declares the exchanges and the dead-letter queue.
func (t *Transport) declareShared(ctx context.Context) error {
	return t.withTopo(ctx, func(ch *amqp.Channel) error {
		for _, ex := range []struct{ name, kind string }{
			{t.directExchange(), amqp.ExchangeDirect},
			{t.eventExchange(), amqp.ExchangeTopic},
			{t.deadExchange(), amqp.ExchangeFanout},
		} {
			if err := ch.ExchangeDeclare(ex.name, ex.kind, true, false, false, false, nil); err != nil {
				return fmt.Errorf("rabbitmq %s: declare exchange %s: %w", t.cfg.name, ex.name, err)
			}
		}
		dlq := t.DeadLetterQueue()
		if _, err := ch.QueueDeclare(dlq, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
			return fmt.Errorf("rabbitmq %s: declare queue %s: %w", t.cfg.name, dlq, err)
		}
		if err := ch.QueueBind(dlq, "", t.deadExchange(), false, nil); err != nil {
			return fmt.Errorf("rabbitmq %s: bind %s: %w", t.cfg.name, dlq, err)
		}
		for _, d := range t.cfg.retryDelays {
			if err := t.declareRetry(ch, d); err != nil {
				return fmt.Errorf("rabbitmq %s: %w", t.cfg.name, err)
			}
		}
		return nil
	})
}

// declareRetry declares the retry queue of delay d and its fanout
// exchange. A message published there with the routing key of a partition
// queue waits d, expires, and is dead-lettered (at least once) to the
// direct exchange under that same routing key: back to the tail of its
// partition.
func (t *Transport) declareRetry(ch *amqp.Channel, d time.Duration) error {
	name := t.retryName(d)
	if err := ch.ExchangeDeclare(name, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %s: %w", name, err)
	}
	args := amqp.Table{
		"x-queue-type":           "quorum",
		"x-message-ttl":          d.Milliseconds(),
		"x-dead-letter-exchange": t.directExchange(),
		"x-dead-letter-strategy": "at-least-once",
		"x-overflow":             "reject-publish",
	}
	if _, err := ch.QueueDeclare(name, true, false, false, false, args); err != nil {
		return fmt.Errorf("declare queue %s: %w", name, err)
	}
	if err := ch.QueueBind(name, "", name, false, nil); err != nil {
		return fmt.Errorf("bind %s: %w", name, err)
	}
	return nil
}

// Declare makes q's partition queues exist (durable quorum queues with
// single active consumer, the delivery limit and at-least-once
// dead-lettering), binds each to the direct exchange by its name and to
// the event exchange for each of q.Events on its partition. Declaring
// again changes nothing (the broker's declare and bind are idempotent);
// declaring with arguments that differ from an existing queue's fails.
func (t *Transport) Declare(ctx context.Context, q transport.Queue) error {
	if q.Name == "" {
		return errors.New("rabbitmq: declare: queue name is empty")
	}
	err := t.withTopo(ctx, func(ch *amqp.Channel) error {
		for p := range t.cfg.partitions {
			name := t.partitionQueue(q.Name, p)
			if _, err := ch.QueueDeclare(name, true, false, false, false, t.queueArgs()); err != nil {
				return fmt.Errorf("declare queue %s: %w", name, err)
			}
			if err := ch.QueueBind(name, name, t.directExchange(), false, nil); err != nil {
				return fmt.Errorf("bind %s to %s: %w", name, t.directExchange(), err)
			}
			for _, ev := range q.Events {
				if err := ch.QueueBind(name, eventKey(ev, p), t.eventExchange(), false, nil); err != nil {
					return fmt.Errorf("bind %s to %s for %s: %w", name, t.eventExchange(), ev, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rabbitmq %s: declare %s: %w", t.cfg.name, q.Name, err)
	}
	t.declared.Store(q.Name, true)
	return nil
}

// DeleteTopology deletes from the broker, with the messages they hold, the
// partition queues of each of queues, then the transport's own queues
// (dead letters, retries) and its exchanges: what a deployment named like
// this transport declared. It is for tearing down test runs and retired
// deployments; consumers of the deleted queues are cancelled by the
// broker. Queues or exchanges that do not exist are skipped.
func (t *Transport) DeleteTopology(ctx context.Context, queues ...string) error {
	var names []string
	for _, q := range queues {
		names = append(names, t.Queues(q)...)
	}
	names = append(names, t.Queues("")...)
	err := t.withTopo(ctx, func(ch *amqp.Channel) error {
		for _, n := range names {
			if _, err := ch.QueueDelete(n, false, false, false); err != nil {
				return fmt.Errorf("delete queue %s: %w", n, err)
			}
		}
		for _, ex := range t.Exchanges() {
			if err := ch.ExchangeDelete(ex, false, false); err != nil {
				return fmt.Errorf("delete exchange %s: %w", ex, err)
			}
		}
		return nil
	})
	if err != nil {
		// The broker closes a channel on a failed operation: the next
		// topology call opens a new one.
		t.topoMu.Lock()
		t.topo = nil
		t.topoMu.Unlock()
		return fmt.Errorf("rabbitmq %s: delete topology: %w", t.cfg.name, err)
	}
	return nil
}
