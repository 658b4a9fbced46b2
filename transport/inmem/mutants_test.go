package inmem_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/transport/transporttest"
)

// The conformance suite is only worth something if it fails for a broken
// transport. Each mutant below breaks one promise of transport.Transport by
// wrapping a working inmem transport; TestSuiteCatchesMutants runs the
// suite's subtest that covers the promise against it, in a child process
// (a failing suite must not fail this test run), and requires that subtest
// to fail.

// mutant is a transport.Transport that forwards to a working one; its
// fields override single methods, and delivery wraps every delivery.
type mutant struct {
	transport.Transport
	declare  func(ctx context.Context, q transport.Queue) error
	publish  func(ctx context.Context, e message.Envelope) error
	consume  func(ctx context.Context, queue string, prefetch int, h transport.Handler) error
	delivery func(d transport.Delivery) transport.Delivery
	// opts are extra options for the wrapped transport.
	opts []inmem.Option
	// features, when set, changes what the suite is told.
	features func(f *transporttest.Features)
}

func (m *mutant) Declare(ctx context.Context, q transport.Queue) error {
	if m.declare != nil {
		return m.declare(ctx, q)
	}
	return m.Transport.Declare(ctx, q)
}

func (m *mutant) Publish(ctx context.Context, e message.Envelope) error {
	if m.publish != nil {
		return m.publish(ctx, e)
	}
	return m.Transport.Publish(ctx, e)
}

func (m *mutant) Consume(ctx context.Context, queue string, prefetch int, h transport.Handler) error {
	if m.delivery != nil {
		inner := h
		h = func(ctx context.Context, d transport.Delivery) { inner(ctx, m.delivery(d)) }
	}
	if m.consume != nil {
		return m.consume(ctx, queue, prefetch, h)
	}
	return m.Transport.Consume(ctx, queue, prefetch, h)
}

// spoiled is a delivery whose fields override single methods.
type spoiled struct {
	transport.Delivery
	envelope   func() message.Envelope
	ack        func(ctx context.Context) error
	requeue    func(ctx context.Context, reason error) error
	retry      func(ctx context.Context, delay time.Duration, reason error) error
	deadLetter func(ctx context.Context, reason error) error
}

func (s *spoiled) Envelope() message.Envelope {
	if s.envelope != nil {
		return s.envelope()
	}
	return s.Delivery.Envelope()
}

func (s *spoiled) Ack(ctx context.Context) error {
	if s.ack != nil {
		return s.ack(ctx)
	}
	return s.Delivery.Ack(ctx)
}

func (s *spoiled) Requeue(ctx context.Context, reason error) error {
	if s.requeue != nil {
		return s.requeue(ctx, reason)
	}
	return s.Delivery.Requeue(ctx, reason)
}

func (s *spoiled) Retry(ctx context.Context, delay time.Duration, reason error) error {
	if s.retry != nil {
		return s.retry(ctx, delay, reason)
	}
	return s.Delivery.Retry(ctx, delay, reason)
}

func (s *spoiled) DeadLetter(ctx context.Context, reason error) error {
	if s.deadLetter != nil {
		return s.deadLetter(ctx, reason)
	}
	return s.Delivery.DeadLetter(ctx, reason)
}

// mutants maps a mutant's name to the suite subtest that must catch it and
// to how it breaks a working transport.
var mutants = map[string]struct {
	group string
	spoil func(m *mutant)
}{
	"AckDoesNothing": {"Ack", func(m *mutant) {
		m.delivery = func(d transport.Delivery) transport.Delivery {
			return &spoiled{Delivery: d, ack: func(context.Context) error { return nil }}
		}
	}},
	"RequeueAcks": {"Requeue", func(m *mutant) {
		m.delivery = func(d transport.Delivery) transport.Delivery {
			return &spoiled{Delivery: d, requeue: func(ctx context.Context, _ error) error { return d.Ack(ctx) }}
		}
	}},
	"RetryRequeuesAtOnce": {"Retry", func(m *mutant) {
		m.delivery = func(d transport.Delivery) transport.Delivery {
			return &spoiled{Delivery: d, retry: func(ctx context.Context, _ time.Duration, reason error) error { return d.Requeue(ctx, reason) }}
		}
	}},
	"RetryIgnoresLimit": {"RetryLimit", func(m *mutant) {
		m.delivery = func(d transport.Delivery) transport.Delivery {
			return &spoiled{Delivery: d, retry: func(ctx context.Context, delay time.Duration, reason error) error {
				if d.Attempt() >= 4 { // features.DeliveryLimit: requeue is not limited below it
					return d.Ack(ctx)
				}
				return d.Retry(ctx, delay, reason)
			}}
		}
	}},
	"SecondSettleSucceeds": {"SettleTwice", func(m *mutant) {
		m.delivery = func(d transport.Delivery) transport.Delivery {
			var once sync.Once
			settle := func(f func() error) error {
				var err error
				once.Do(func() { err = f() })
				return err
			}
			return &spoiled{
				Delivery:   d,
				ack:        func(ctx context.Context) error { return settle(func() error { return d.Ack(ctx) }) },
				requeue:    func(ctx context.Context, r error) error { return settle(func() error { return d.Requeue(ctx, r) }) },
				deadLetter: func(ctx context.Context, r error) error { return settle(func() error { return d.DeadLetter(ctx, r) }) },
			}
		}
	}},
	"DeadLetterLosesReason": {"DeadLetter", func(m *mutant) {
		m.delivery = func(d transport.Delivery) transport.Delivery {
			return &spoiled{Delivery: d, deadLetter: func(ctx context.Context, _ error) error {
				return d.DeadLetter(ctx, errors.New("failed"))
			}}
		}
	}},
	"RedeliverySharesMemory": {"Requeue", func(m *mutant) {
		// Every delivery of a message hands out the maps and slices of its
		// first one.
		var mu sync.Mutex
		first := map[string]message.Envelope{}
		m.delivery = func(d transport.Delivery) transport.Delivery {
			mu.Lock()
			defer mu.Unlock()
			e, ok := first[d.Envelope().ID]
			if !ok {
				e = d.Envelope()
				first[e.ID] = e
			}
			return &spoiled{Delivery: d, envelope: func() message.Envelope { return e }}
		}
	}},
	"ClaimsPersistent": {"Persistent", func(m *mutant) {
		m.features = func(f *transporttest.Features) { f.Persistent = true }
	}},
	"IgnoresDeliveryLimit": {"DeliveryLimit", func(m *mutant) {
		m.opts = []inmem.Option{inmem.WithDeliveryLimit(1000)}
	}},
	"OccurredAtInSeconds": {"RoundTrip", func(m *mutant) {
		m.delivery = func(d transport.Delivery) transport.Delivery {
			return &spoiled{Delivery: d, envelope: func() message.Envelope {
				e := d.Envelope()
				e.OccurredAt = e.OccurredAt.Truncate(time.Second)
				return e
			}}
		}
	}},
	"DropsEveryTenthPublish": {"KeyOrder", func(m *mutant) {
		var mu sync.Mutex
		n := 0
		m.publish = func(ctx context.Context, e message.Envelope) error {
			mu.Lock()
			n++
			drop := n%10 == 0
			mu.Unlock()
			if drop {
				return nil
			}
			return m.Transport.Publish(ctx, e)
		}
	}},
	"SwapsPublishesOfAKey": {"KeyOrder", func(m *mutant) {
		// Holds each key's message until the next one of that key has
		// been published (or 20ms have passed).
		var mu sync.Mutex
		held := map[string]*message.Envelope{}
		m.publish = func(ctx context.Context, e message.Envelope) error {
			mu.Lock()
			defer mu.Unlock()
			if h := held[e.Key]; h != nil {
				delete(held, e.Key)
				if err := m.Transport.Publish(ctx, e); err != nil {
					return err
				}
				return m.Transport.Publish(ctx, *h)
			}
			if err := e.Validate(); err != nil {
				return err
			}
			h := e.Clone()
			held[e.Key] = &h
			time.AfterFunc(20*time.Millisecond, func() {
				mu.Lock()
				defer mu.Unlock()
				if held[e.Key] == &h {
					delete(held, e.Key)
					_ = m.Transport.Publish(context.Background(), h)
				}
			})
			return nil
		}
	}},
	"EventsToFirstSubscriberOnly": {"EventFanOut", func(m *mutant) {
		var mu sync.Mutex
		bound := map[string]bool{}
		m.declare = func(ctx context.Context, q transport.Queue) error {
			mu.Lock()
			var evs []string
			for _, ev := range q.Events {
				if !bound[ev] {
					bound[ev] = true
					evs = append(evs, ev)
				}
			}
			mu.Unlock()
			q.Events = evs
			return m.Transport.Declare(ctx, q)
		}
	}},
	"RepliesDropped": {"ReplyRouting", func(m *mutant) {
		m.publish = func(ctx context.Context, e message.Envelope) error {
			if e.Kind == message.KindReply {
				return nil
			}
			return m.Transport.Publish(ctx, e)
		}
	}},
	"UnroutableSwallowed": {"PublishRefusals", func(m *mutant) {
		m.publish = func(ctx context.Context, e message.Envelope) error {
			if err := m.Transport.Publish(ctx, e); !errors.Is(err, transport.ErrUnroutable) {
				return err
			}
			return nil
		}
	}},
	"OversizedSwallowed": {"MessageSize", func(m *mutant) {
		m.publish = func(ctx context.Context, e message.Envelope) error {
			if err := m.Transport.Publish(ctx, e); !errors.Is(err, message.ErrPayloadTooLarge) {
				return err
			}
			return nil
		}
	}},
	"HandoverAcksUnsettled": {"ConsumerHandover", func(m *mutant) {
		// A stopping consumer acks what it holds before it lets go,
		// instead of giving it back.
		m.consume = func(ctx context.Context, queue string, prefetch int, h transport.Handler) error {
			var mu sync.Mutex
			var got []transport.Delivery
			inner, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				select {
				case <-ctx.Done():
				case <-inner.Done():
					return
				}
				mu.Lock()
				for _, d := range got {
					_ = d.Ack(context.Background())
				}
				mu.Unlock()
				cancel()
			}()
			return m.Transport.Consume(inner, queue, prefetch, func(ctx context.Context, d transport.Delivery) {
				mu.Lock()
				got = append(got, d)
				mu.Unlock()
				h(ctx, d)
			})
		}
	}},
	"IgnoresPrefetch": {"Prefetch", func(m *mutant) {
		m.consume = func(ctx context.Context, queue string, prefetch int, h transport.Handler) error {
			return m.Transport.Consume(ctx, queue, prefetch*3, h)
		}
	}},
	"RedeclareFails": {"DeclareIdempotent", func(m *mutant) {
		var mu sync.Mutex
		seen := map[string]bool{}
		m.declare = func(ctx context.Context, q transport.Queue) error {
			mu.Lock()
			again := seen[q.Name]
			seen[q.Name] = true
			mu.Unlock()
			if again {
				return errors.New("queue exists")
			}
			return m.Transport.Declare(ctx, q)
		}
	}},
	"PublishAfterCloseAccepted": {"Close", func(m *mutant) {
		m.publish = func(ctx context.Context, e message.Envelope) error {
			if err := m.Transport.Publish(ctx, e); !errors.Is(err, transport.ErrClosed) {
				return err
			}
			return nil
		}
	}},
}

// mutantEnv names the mutant a child process runs.
const mutantEnv = "SAGAFLOW_TRANSPORTTEST_MUTANT"

// TestMutant runs the suite against the mutant named by
// $SAGAFLOW_TRANSPORTTEST_MUTANT. It is skipped unless
// TestSuiteCatchesMutants started it.
func TestMutant(t *testing.T) {
	name := os.Getenv(mutantEnv)
	if name == "" {
		t.Skip("runs only as a child of TestSuiteCatchesMutants")
	}
	mu, ok := mutants[name]
	if !ok {
		t.Fatalf("unknown mutant %q", name)
	}
	f := features
	f.RedeliveryTimeout = 2 * time.Second // what a mutant loses never comes
	probe := &mutant{}
	mu.spoil(probe)
	if probe.features != nil {
		probe.features(&f)
	}
	transporttest.Run(t, func(t *testing.T) transport.Transport {
		m := &mutant{}
		mu.spoil(m)
		m.Transport = newTransport(t, m.opts...)
		return m
	}, f)
}

func TestSuiteCatchesMutants(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process per mutant")
	}
	if os.Getenv(mutantEnv) != "" {
		t.Skip("inside a mutant's child process")
	}
	// The children mostly wait, so all of them run at once, not
	// -test.parallel at a time.
	type result struct {
		out []byte
		err error
	}
	results := map[string]chan result{}
	for name, mu := range mutants {
		ch := make(chan result, 1)
		results[name] = ch
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			run := "^TestMutant$/^" + regexp.QuoteMeta(mu.group) + "$"
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+run, "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), mutantEnv+"="+name)
			out, err := cmd.CombinedOutput()
			ch <- result{out, err}
		}()
	}
	for name, mu := range mutants {
		t.Run(name, func(t *testing.T) {
			r := <-results[name]
			var exit *exec.ExitError
			if !errors.As(r.err, &exit) {
				t.Fatalf("the suite's %s test passed against mutant %s (err %v):\n%s", mu.group, name, r.err, tail(r.out))
			}
			if !strings.Contains(string(r.out), "--- FAIL: TestMutant/"+mu.group+" ") {
				t.Fatalf("child process failed, but not in %s:\n%s", mu.group, tail(r.out))
			}
			if testing.Verbose() {
				t.Logf("caught by %s:\n%s", mu.group, failures(r.out))
			}
		})
	}
}

// failures returns the lines of a child's output that say what failed.
func failures(out []byte) string {
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, ".go:") && len(lines) < 5 {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

func tail(out []byte) string {
	const n = 3000
	if len(out) > n {
		return "..." + string(out[len(out)-n:])
	}
	return string(out)
}
