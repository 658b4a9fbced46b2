// Package transporttest is the conformance suite every transport.Transport
// implementation runs: one call from the implementation's own test,
//
//	func TestTransport(t *testing.T) {
//		transporttest.Run(t, newTransport, transporttest.Features{Partitions: 4, DeliveryLimit: 4})
//	}
//
// where newTransport returns a transport for each subtest and Features says
// how it was configured, so that the suite demands exactly that.
//
// The suite is the executable form of the contract of package transport and
// of the parts of invariants I3, I4 and I6 (docs/ARCHITECTURE.md) a
// transport carries: publish returns once the message is taken
// (I4), a key's messages arrive in publish order and each exactly once
// while nothing fails, unsettled deliveries go to the next consumer after a
// consumer stops (so ack-after-persist loses nothing and I3 absorbs the
// duplicate), and bad input is refused with a sentinel error or parked in
// the dead letters with its reason (I6).
//
// It is written to run against a real broker shared by many runs: every
// subtest declares its own queues and event types under names unique to the
// run, looks for its own dead letters by message ID, bounds every wait with
// a deadline (Features.RedeliveryTimeout for what must arrive,
// Features.QuietPeriod for what must not) and stops its consumers with
// t.Cleanup.
//
// Beyond the words of package transport, the suite pins down choices every
// transport must make the same way:
//
//   - every envelope field comes back unchanged, the payload byte for byte
//     (the fixtures use compact JSON with non-ASCII text and the characters
//     '<', '>' and '&', which encoding/json's HTML escaping would rewrite),
//     OccurredAt to the millisecond; the publisher's envelope is copied, so
//     changing it after Publish changes nothing;
//   - Delivery.Partition is transport.Partition(key, Features.Partitions);
//   - an event whose type no queue is bound to is published without error
//     (and goes nowhere);
//   - a message is delivered exactly Features.DeliveryLimit times when every
//     delivery is requeued; the last Requeue dead-letters it, and the dead
//     letter's Attempts is DeliveryLimit and its Reason contains the last
//     reason's text;
//   - a stopped consumer's unsettled deliveries come to the next consumer
//     in their original order with Attempt above 1, and settling one of
//     them through the old delivery fails;
//   - ReplayDeadLetters delivers a dead letter again, unchanged, with
//     Attempt 1, on the queue and partition it was dead-lettered from (an
//     event only to that subscriber), removes it from the dead letters and
//     returns its ID; DiscardDeadLetters removes only the letters named;
//     IDs that are not dead letters are left out of both results;
//   - a delivered envelope is the consumer's own copy: changing its headers
//     or payload before a Requeue does not change the redelivery;
//   - Consume returns nil when its context is cancelled; after Close, Publish
//     fails with transport.ErrClosed, Consume returns promptly with
//     transport.ErrClosed, and a running Consume returns promptly;
//   - with Features.Persistent, what was queued and not acked when a
//     transport closed is delivered through the next one, in order, and
//     what was acked is not.
//
// It lives in a normal (non-test) package so that transports in other
// packages and modules can import it. Against transport/inmem the whole
// suite takes well under a second; its subtests run in parallel.
package transporttest
