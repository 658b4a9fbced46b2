// Package participant is the SDK for a service that takes part in sagas
// from its own process, with its own database: it receives the commands a
// saga sends it and answers each with a reply the saga machine accepts.
//
// A service registers one handler per command type with Handle and calls
// Run, which consumes the service's queue (the same queue and partitions
// the engine publishes its commands to) until its context ends. For each
// delivery the SDK
//
//   - dead-letters, with the reason, a message that is not a command, has
//     no handler or does not decode (I6: nothing is lost, nothing stops);
//   - answers a command it has handled before with the reply it recorded
//     then, without calling the handler again (I3);
//   - calls the handler, recovering a panic into a technical error;
//   - turns the outcome into a reply: a success carrying the handler's
//     typed result (message.Accepted when it returns none), a business
//     failure (an error made with Fail: the saga compensates), or, after a
//     bounded number of in-place retries of a technical error, a retryable
//     failure (the saga retries the step by its retry policy);
//   - records the handled message ID and the reply through the service's
//     Deduper, then publishes the reply, then acks the delivery (I4: a
//     crash in between redelivers the command, which the record absorbs).
//
// When the Deduper is also an Inbox (MemoryDeduper and StoreDeduper
// are), a valid command is acked as soon as the Inbox has accepted it, and
// the handler runs after, from the inbox (one command at a time per key,
// in the order accepted, 16 keys at once): a handler that runs longer
// than the broker's consumer timeout holds no delivery, so the broker
// closes no channel. A command accepted twice is run once; the commands
// still in the inbox when Run stops are run by the next Run.
//
// Deduplication is the service's Deduper. Implement it on the service's
// own database so that the handled ID is written in the same transaction
// as the handler's change (Deduper.Once gives the handler a context that
// can carry that transaction). StoreDeduper keeps the record in any
// store.Store (embedded bbolt or MongoDB) and MemoryDeduper keeps it in
// memory, for tests.
package participant
