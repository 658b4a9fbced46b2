// Package rabbitmq is the RabbitMQ transport: transport.Transport over AMQP
// 0.9.1 (github.com/rabbitmq/amqp091-go), for RabbitMQ 3.10 and later. It
// passes the conformance suite in transport/transporttest against a real
// broker and carries the transport's part of invariants I3, I4 and I6.
//
// # Topology
//
// Everything is durable and declared idempotently. With name N (WithName,
// default "sagaflow"):
//
//   - exchange "N.direct" (direct): commands and replies, routing key "Q.p";
//   - exchange "N.events" (topic): events, routing key "<type>.<p>", so an
//     event goes to the partition of its key in every queue bound to its
//     type;
//   - exchange "N.dlx" (fanout) and quorum queue "N.dead-letters": the
//     dead letters of every queue;
//   - per retry delay D (WithRetryDelays; 1s, 5s, 30s and 2m by default):
//     fanout exchange and quorum queue "N.retry.<D in ms>ms", with
//     x-message-ttl D and x-dead-letter-exchange "N.direct" (at least
//     once): Delivery.Retry publishes a copy there under the routing key
//     of the message's partition queue and acks the original; when D has
//     passed the broker dead-letters it back to the tail of that
//     partition;
//   - per declared queue Q and partition p in [0, P): quorum queue
//     "N.Q.p" with x-single-active-consumer, x-delivery-limit,
//     x-dead-letter-exchange "N.dlx", x-dead-letter-strategy at-least-once
//     and x-overflow reject-publish, bound to "N.direct" with key "N.Q.p"
//     and to "N.events" with "<type>.p" for each event type of Q.
//
// Every name starts with N, so deployments (and test runs) with different
// names share a vhost without sharing anything; Queues and Exchanges list
// the names, and DeleteTopology removes them.
//
// Single active consumer makes the broker deliver a partition to one
// consumer at a time, in order; a standby consumer (another Consume, on
// this or another node) takes over the unsettled deliveries when the
// active one stops.
//
// # Publishing
//
// Publish validates and encodes the envelope (message.MarshalEnvelope,
// WithMaxMessageSize), publishes it persistent (delivery mode 2) on one of
// a small pool of confirm-mode channels, and returns once the broker
// confirmed it: the message is then on disk in a quorum of nodes (I4).
// Commands and replies are published mandatory: a command to a queue that
// was never declared comes back as a basic.return and Publish fails with
// transport.ErrUnroutable, even though the broker also confirms it.
// Several goroutines publish on one pool channel at once (the library
// serializes the frames); their confirms are awaited independently
// (DeferredConfirmation), so the broker confirms them in batches.
//
// Every wait is bounded by the caller's context and WithPublishTimeout
// (ErrNotReady while waiting for the connection, ErrNotConfirmed after the
// message was written):
// while the connection is recovering or the broker has blocked it (a
// resource alarm, reported by connection.blocked), Publish waits for it to
// come back and fails when the time is up; a confirm that is still
// outstanding when the connection drops fails the Publish at once
// (ErrNotConfirmed): the message may or may not have been taken, and the
// caller publishes it again (the consumer absorbs the duplicate, I3).
// Publish never retries by itself.
//
// # Consuming
//
// Each Consume opens one AMQP channel with basic.qos prefetch (per
// consumer) and one consumer per partition queue, with manual acks: at
// most prefetch deliveries unsettled per partition. Each partition's
// deliveries are handed to the handler in order by their own goroutine.
// Delivery.Attempt is x-delivery-count + 1 (a quorum queue counts every
// return, including those of a consumer that stopped without settling).
// A delivery that cannot be decoded (malformed, larger than the size
// limit, not a valid envelope) is dead-lettered with the reason and the
// consumer goes on. When ctx ends Consume cancels its consumers and requeues
// what was left unsettled (basic.nack of every outstanding delivery), and
// the next consumer gets it; settling a delivery of a stopped Consume fails
// with transport.ErrAlreadySettled. The queue must have been declared by
// the same Transport (else transport.ErrUnroutable).
//
// Ack is basic.ack. Requeue is basic.nack with requeue, except on the
// delivery that reaches the delivery limit (WithDeliveryLimit): the
// transport dead-letters that one itself, with "delivery limit N reached;
// last error: <reason>", so the last reason is never lost. Retry counts
// toward the same limit: the copy carries the attempts so far in the
// header sagaflow-prior-attempts, and Attempt adds the new copy's
// x-delivery-count to it. The queues'
// x-delivery-limit is set to the same limit as a backstop: a message whose
// deliveries keep being returned without a reason (consumers that crash
// on it) is dead-lettered by the broker, and DeadLetters reports the
// broker's reason from the x-death header. DeadLetter publishes a copy of
// the message, with headers reason, queue, attempts and
// dead-lettered-at, to "N.dlx" and waits for the confirm, then acks the
// original: a crash in between leaves two copies, never none.
//
// DeadLetters browses "N.dead-letters" on a channel of its own: it
// consumes up to limit messages (prefetch limit) without acking them,
// stops at limit or after 250ms without a delivery, then cancels the
// consumer and requeues every one of them, which puts them back in their
// order. Nothing is removed; a concurrent browse sees fewer letters
// meanwhile. Letters the transport parked carry the headers above; letters
// the broker parked (the delivery-limit backstop) are read from x-death.
//
// # Recovery
//
// The transport uses two connections, one for publishing and one for
// consuming (a broker that blocks publishers must not stop acks), both with
// amqp091-go's automatic recovery: on a lost connection or channel the
// library reconnects (WithReconnect: interval plus jitter, bounded
// attempts), reopens the channels with their qos and confirm mode,
// re-declares the recorded topology and re-subscribes the consumers. The
// transport only watches: it drains every notification channel it
// registers (state changes, blocked, returns) with a goroutine it owns,
// logs the transitions and reflects them in Ready.
//
// Channels are never closed one by one: consume channels are reused by the
// next Consume or DeadLetters after their consumers are cancelled. With
// amqp091-go v1.16.0 a Channel.Close while the connection is down leaves
// the channel registered in a closing state and every later reconnect
// attempt fails on it, so the connection never recovers
// (TestLibraryTrapChannelCloseDuringRecovery). A Consume that stops while
// the connection is down parks its channel; once the connection is open
// again the consumers the library re-subscribed are cancelled and their
// deliveries requeued, so they do not keep the partitions' single active
// consumer slot.
//
// Close closes the two connections and stops every goroutine of the
// transport even when the library does not close its notification
// channels, which happens when Close comes just as a lost connection is
// about to be recovered.
//
// One thing the library does not do: delivery tags start again at 1 on a
// recovered channel, while deliveries from before the loss are still in the
// handler's hands or in the library's consumer buffers, and acking one of
// them would ack whatever the new session delivered under that tag. The
// transport hooks the library's recovery callbacks (which run before the
// reconnect starts): it revokes every delivery of the lost channel
// (settling one fails with transport.ErrAlreadySettled, the broker
// redelivers it anyway) and discards the old session's deliveries still
// buffered, before the channel is reopened.
package rabbitmq
