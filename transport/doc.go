// Package transport defines how sagaflow moves envelopes between services:
// commands and replies point to point to a destination's queue, events to
// every queue bound to their type. Each destination's messages are split into
// partitions by a stable hash of the message key; a partition is delivered in
// order, one consumer at a time, so the messages of one key are handled in
// the order they were published.
//
// A delivery must be settled exactly once: Ack after its outcome is
// persisted (I4), Requeue to have it delivered again (after a crash or a
// panic), or DeadLetter to park it with a reason (I6). A delivery that is
// requeued more often than the transport's delivery limit is dead-lettered
// with the last reason. An operator lists dead letters (DeadLetters), puts
// them back on the queue and partition they came from (ReplayDeadLetters)
// or deletes them (DiscardDeadLetters).
//
// Implementations live in sub-packages (transport/inmem,
// transport/rabbitmq); each runs the conformance suite in
// transport/transporttest.
package transport
