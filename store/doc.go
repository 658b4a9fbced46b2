// Package store defines how sagaflow keeps state: append-only streams of
// commits, one stream per aggregate and one per saga instance, with the
// messages a commit emits (its outbox), the IDs of the messages it handled,
// and the durable timers it sets, all written together in one atomic write.
//
// The root package holds the interfaces and shared types; implementations
// live in sub-packages (store/embedded, store/mongo) and each runs the one
// conformance suite in store/storetest.
//
// Invariants every implementation upholds (see docs/ARCHITECTURE.md):
//
//   - I1 atomic state + outbox: Append writes a commit's events, outbox
//     messages, handled-message IDs and timers in one write, or nothing.
//   - I2 optimistic concurrency: a commit is an insert keyed by (stream,
//     version); a second commit at the same version fails with ErrConcurrency
//     and writes nothing.
//   - I3 idempotent consumption: a commit that names a handled message ID
//     already recorded for its stream fails with ErrAlreadyHandled and
//     writes nothing; Handled tells a consumer whether it saw a message.
//   - I4 outbox: an outbox message stays pending until MarkDispatched.
//   - I5 durable timers: a timer is stored with its due time and returned
//     by DueTimers after a restart until it is deleted or cancelled.
//
// Derived and side data lives apart from commits: Snapshots (a stream's
// latest state, losing one only makes loads longer) and Keys (one
// encryption key per data subject for crypto-shredding; DeleteKey is how a
// subject is forgotten, so it must be durable, and CreateKey lets the
// first writer win so that no data is sealed under a key that is lost).
package store
