// Package inmem is the in-process transport, the default when no AMQP URL
// is given. It keeps the contract of package transport the way the
// RabbitMQ transport keeps it, so that the engine behaves the same on both,
// and it passes the same conformance suite (transport/transporttest).
//
// # Model
//
// A queue is declared by name with the event types it subscribes to.
// Commands and replies go to the queue named by their Destination (none
// declared: transport.ErrUnroutable); events are copied to every queue
// bound to their type (none bound: dropped without error, as by a topic
// exchange).
//
// Each queue has P partitions (WithPartitions); a message goes to partition
// transport.Partition(key, P). A partition is a FIFO in publish order.
// One Consume per queue is active at a time, like a RabbitMQ
// single-active-consumer queue: a second Consume of the same queue stands
// by and takes over when the first one's context ends. The active consumer
// runs one goroutine per partition, which hands that partition's messages
// to the handler in order and keeps at most prefetch of them unsettled: so
// a key's messages are handled one after another, in order, on one node.
//
// A delivery is settled once: Ack (gone), Requeue (back to the front of
// its partition, ahead of everything published after it, delivered again
// with Attempt one higher) or DeadLetter (moved to the dead-letter list
// with the reason). The Requeue of the last delivery the delivery limit
// allows (WithDeliveryLimit) dead-letters the message with the reason
// given. When a consumer's context ends, the deliveries it left unsettled
// are revoked (settling them fails with transport.ErrAlreadySettled) and
// go back to the front of their partitions in publish order, for the next
// consumer: ack after persist (I4) loses nothing when a consumer stops or
// crashes, and the duplicate it may cause is absorbed by idempotent
// consumption (I3).
//
// Messages are encoded on publish with message.MarshalEnvelope, which
// enforces the size limit (WithMaxMessageSize, message.ErrPayloadTooLarge),
// and decoded afresh on every delivery, so the publisher, the consumers and
// the dead-letter list never share memory: changing a delivered envelope's
// headers or payload changes nothing elsewhere. Invalid envelopes are
// refused with message.ErrInvalidEnvelope (I6).
//
// # Resources
//
// Nothing survives the process: after a crash the engine recovers from its
// store (the outbox relay and the resume of unfinished sagas). Pending
// messages are held in memory and bounded only by what producers publish;
// the engine bounds its own in-flight work. The dead-letter list is a ring
// (WithDeadLetterCapacity): when it is full the oldest letter is dropped,
// counted (Transport.DroppedDeadLetters) and logged at the 1st, 2nd, 4th,
// 8th... drop.
//
// Every Consume owns its goroutines (one per partition and one that stops
// them) and waits for them before it returns; Close stops every Consume
// and waits for it. Waiting is done on a sync.Cond per partition: no
// polling, no sleeps.
package inmem
