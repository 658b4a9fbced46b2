// Package inmem is the in-process transport, the default when no AMQP URL
// is given. It keeps the contract RabbitMQ will keep (see package
// transport): per queue, per partition FIFOs; one active consumer per
// queue, with later consumers standing by; at most prefetch unsettled
// deliveries per partition; Ack, Requeue (back to the front of its
// partition, so a key's order holds) and DeadLetter; a delivery limit past
// which a requeued message is dead-lettered with its last reason.
//
// Messages are copied on publish (encoded as message.MarshalEnvelope does,
// with the size limit, but without HTML escaping, so payload bytes come back
// unchanged) and decoded afresh on every delivery, so publisher and
// consumers never share memory.
//
// Nothing survives the process: after a crash the engine recovers from the
// store (the outbox relay and the resume of unfinished sagas). Pending
// queues hold what producers published; the engine bounds its own
// in-flight work. The dead-letter list is a ring of bounded capacity; what
// it drops is counted.
package inmem
