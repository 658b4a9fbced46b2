// Package actors is sagaflow's shell on Proto.Actor: the partition
// consumers that take deliveries from a transport, the router actors that
// hand each delivery to the actor of its key, the aggregate and saga actors
// that load their stream, call the pure core (package aggregate, package
// workflows) and commit the outcome, and the services that publish the
// outbox and fire durable timers.
//
// The rules that make this safe, given that Proto.Actor silently drops the
// message whose handling panicked and whatever is left in a stopped actor's
// mailbox:
//
//   - A delivery is acked only after its outcome is committed (I4), and
//     the commit carries the delivery's message ID (I3), so a redelivery
//     is recognised and acked without being applied again.
//   - A panic requeues the delivery before the supervisor restarts the
//     actor; the restarted actor reloads its state from the store. A
//     message that keeps panicking is dead-lettered by the transport's
//     delivery limit.
//   - Passivation stops an idle actor only when its router has forwarded it
//     no message it has not finished, so no queued message is dropped. The
//     router decides on a ticker of its own; Proto.Actor's receive timeout
//     is not used (it races at the pinned version, asynkron/protoactor-go#1139).
//   - Store errors are retried in place with bounded back-off, so a later
//     message of the same key does not overtake the failing one; after the
//     budget the delivery is requeued.
package actors
