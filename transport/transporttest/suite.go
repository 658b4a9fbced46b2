package transporttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// Features says how the transport under test is configured.
type Features struct {
	// Partitions is the number of partitions per queue the transport was
	// made with. Zero means transport.DefaultPartitions.
	Partitions int
	// DeliveryLimit is how many deliveries a message gets when each one is
	// requeued: the requeue of delivery number DeliveryLimit dead-letters
	// it. It must be at least 2 (the Requeue test needs a second delivery).
	// Zero means 20, inmem's default.
	DeliveryLimit int
	// MaxMessageSize is the largest encoded envelope, in bytes, the
	// transport accepts. Zero means message.DefaultMaxSize.
	MaxMessageSize int
	// RedeliveryTimeout bounds every wait for something that must happen:
	// a delivery, a redelivery, a dead letter, a consumer taking over or
	// returning. Zero means 10s; a real broker shared by many runs may need
	// more.
	RedeliveryTimeout time.Duration
	// QuietPeriod is how long the suite waits, after what must arrive has
	// arrived, before it concludes that something else does not arrive (an
	// unbound queue's event, an acked message's redelivery, a delivery past
	// the prefetch). Zero means 200ms.
	QuietPeriod time.Duration
	// Persistent says that queued messages outlive the transport value
	// that took them: what is queued and not acked when one transport from
	// newTransport is closed is delivered through the next one (a broker
	// keeps its queues). False for transport/inmem, whose queues live and
	// die with its Transport; the Persistent subtest is then skipped.
	Persistent bool
	// RetryDelay is the delay the suite asks Retry for: the shortest the
	// transport supports. Zero means 1s.
	RetryDelay time.Duration
}

// Run runs the conformance suite against the transports newTransport makes.
// newTransport is called once per subtest (twice in Persistent) and may
// return a new transport or one over a shared broker; the suite uses fresh,
// uniquely named queues and event types in every subtest, and closes each
// transport when the subtest ends (Close on a transport the suite already closed must return nil or
// transport.ErrClosed). The subtests run in parallel.
func Run(t *testing.T, newTransport func(t *testing.T) transport.Transport, f Features) {
	t.Helper()
	if f.Partitions <= 0 {
		f.Partitions = transport.DefaultPartitions
	}
	if f.DeliveryLimit == 0 {
		f.DeliveryLimit = 20
	}
	if f.DeliveryLimit < 2 {
		t.Fatalf("transporttest: Features.DeliveryLimit is %d; the suite needs at least 2", f.DeliveryLimit)
	}
	if f.MaxMessageSize <= 0 {
		f.MaxMessageSize = message.DefaultMaxSize
	}
	if f.RedeliveryTimeout <= 0 {
		f.RedeliveryTimeout = 10 * time.Second
	}
	if f.RetryDelay <= 0 {
		f.RetryDelay = time.Second
	}
	if f.QuietPeriod <= 0 {
		f.QuietPeriod = 200 * time.Millisecond
	}
	s := &suite{newTransport: newTransport, f: f, run: runID()}
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"RoundTrip", s.testRoundTrip},
		{"ReplyRouting", s.testReplyRouting},
		{"EventFanOut", s.testEventFanOut},
		{"PublishRefusals", s.testPublishRefusals},
		{"MessageSize", s.testMessageSize},
		{"Ack", s.testAck},
		{"SettleTwice", s.testSettleTwice},
		{"Requeue", s.testRequeue},
		{"ConsumerHandover", s.testConsumerHandover},
		{"KeyOrder", s.testKeyOrder},
		{"Retry", s.testRetry},
		{"RetryLimit", s.testRetryLimit},
		{"DeadLetter", s.testDeadLetter},
		{"DeadLetterReplay", s.testDeadLetterReplay},
		{"DeadLetterDiscard", s.testDeadLetterDiscard},
		{"DeliveryLimit", s.testDeliveryLimit},
		{"Prefetch", s.testPrefetch},
		{"DeclareIdempotent", s.testDeclareIdempotent},
		{"Close", s.testClose},
		{"Persistent", s.testPersistent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

// suite carries Run's arguments to the tests.
type suite struct {
	newTransport func(t *testing.T) transport.Transport
	f            Features
	run          string       // unique to this Run call
	seq          atomic.Int64 // numbers the names made by name
}

// testTimeout bounds every subtest's context, so that a hanging transport
// fails the subtest instead of the whole run.
const testTimeout = 2 * time.Minute

// deadLetterScan is how many dead letters the suite reads when it looks for
// its own; purge the dead-letter queue of a shared broker now and then.
const deadLetterScan = 10_000

// runID returns a short random string that makes names unique to a run.
func runID() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("transporttest: no randomness: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// name returns a queue name, key or event name prefix unique to this run.
func (s *suite) name(what string) string {
	return fmt.Sprintf("tt-%s-%s%d", s.run, what, s.seq.Add(1))
}

// eventType returns a fresh, valid event type name.
func (s *suite) eventType(what string) string {
	return message.TypeName(fmt.Sprintf("tt%s.%s%d", s.run, what, s.seq.Add(1)), 1)
}

// setup returns a context bounded by testTimeout and a transport that is
// closed when the test ends.
func (s *suite) setup(t *testing.T) (context.Context, transport.Transport) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	tr := s.newTransport(t)
	if tr == nil {
		t.Fatal("newTransport returned nil")
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil && !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return ctx, tr
}

// declare declares a queue named after what, bound to events, and returns
// its name.
func (s *suite) declare(t *testing.T, ctx context.Context, tr transport.Transport, what string, events ...string) string {
	t.Helper()
	q := transport.Queue{Name: s.name(what), Events: events}
	if err := tr.Declare(ctx, q); err != nil {
		t.Fatalf("Declare(%+v): %v", q, err)
	}
	return q.Name
}

func mustPublish(t *testing.T, ctx context.Context, tr transport.Transport, e message.Envelope) {
	t.Helper()
	if err := tr.Publish(ctx, e); err != nil {
		t.Fatalf("Publish(%s %s %s to %q, key %q): %v", e.Kind, e.Type, e.ID, e.Destination, e.Key, err)
	}
}

// within polls cond every few milliseconds until it holds or d passes, and
// reports whether it held.
func within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}
