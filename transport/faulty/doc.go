// Package faulty wraps a transport.Transport and injects the faults a real
// broker produces, so that tests can show the engine survives them: every
// delivery handed to the consumer twice (a redelivery after a lost ack, or
// a duplicate publish), acknowledgements lost (the broker never got the
// ack and delivers the message again), and deliveries of a partition
// handed out of order (neighbours swapped).
//
// It owns no messages: publishing, queues and dead letters are the wrapped
// transport's. A delivery that is handed out twice is settled on the
// wrapped transport once, when both copies have been settled: with Ack
// when both acked, otherwise with the first copy's other outcome (Requeue,
// Retry or DeadLetter), so a copy whose handling failed is never hidden by
// the other copy's ack (I4: nothing is acknowledged that was not handled).
//
// What it lets tests prove is I3 (idempotent consumption): a consumer that
// sees a message twice, or out of order, must apply it once. Reorder
// breaks the per-key order the transport contract promises, on purpose.
package faulty
