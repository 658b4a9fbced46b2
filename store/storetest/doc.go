// Package storetest is the conformance suite every store.Store
// implementation runs: one call from the implementation's own test,
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, newStore, storetest.Features{Reopen: reopen, DetectsGaps: true})
//	}
//
// where newStore returns a fresh, empty store for each subtest and Features
// says what the store supports, so that the suite demands exactly that.
//
// The suite is the executable form of the persistence invariants of
// docs/ARCHITECTURE.md: it proves I1 (a refused commit leaves no trace),
// I2 (racing appends at one version: exactly one wins, the rest get
// store.ErrConcurrency, nothing is lost or duplicated), I3 (handled
// message IDs, store.ErrAlreadyHandled), I4 (pending outbox entries until
// MarkDispatched, also across a reopen) and I5 (durable timers that fire
// after a restart), plus round trips of every field, Info and List,
// snapshots, context cancellation and closing.
//
// Beyond the words of the store package, the suite pins down choices every
// store must make the same way:
//
//   - payload bytes come back unchanged (the fixtures use compact JSON with
//     non-ASCII text and the characters '<', '>' and '&', which
//     encoding/json's HTML escaping would rewrite);
//   - times come back equal to Features.TimePrecision (at worst to the
//     millisecond); their zone may change;
//   - PendingOutbox orders by commit time, and a commit's messages in the
//     order of its Outbox;
//   - a call with a cancelled or expired context returns, within seconds, an
//     error that wraps the context's error;
//   - after Close every method returns an error that wraps store.ErrClosed;
//   - MarkDispatched and DeleteTimers survive a clean close and reopen;
//   - the store keeps no reference to the Commit passed to Append;
//   - a snapshot's State comes back byte for byte (also bytes that are not
//     UTF-8), an older SaveSnapshot never replaces a newer snapshot, and
//     snapshots survive a reopen.
//
// It lives in a normal (non-test) package so that store implementations in
// other packages, and other modules, can import it. Each of its tests uses
// a fresh store and finishes in well under a second against the embedded
// store; the whole suite takes a few seconds with -race.
package storetest
