package rabbitmq_test

import (
	"github.com/sagaflow/sagaflow/internal/testenv"

	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
	"github.com/sagaflow/sagaflow/transport/transporttest"
)

func itoa(n int) string {
	return string(appendInt(nil, n))
}

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

func randomID(t testing.TB) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

func quietLogger() *slog.Logger {
	if os.Getenv("SAGAFLOW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// cleaner records the queues a test declares and deletes them, with the
// transport's exchanges and dead-letter queue, when the test ends.
type cleaner struct {
	url        string
	name       string
	partitions int
	mu         sync.Mutex
	queues     map[string]bool
}

func newCleaner(t *testing.T, url, name string, partitions int) *cleaner {
	c := &cleaner{url: url, name: name, partitions: partitions, queues: map[string]bool{}}
	t.Cleanup(func() { c.clean(t) })
	return c
}

func (c *cleaner) add(queue string) {
	c.mu.Lock()
	c.queues[queue] = true
	c.mu.Unlock()
}

func (c *cleaner) clean(t *testing.T) {
	c.mu.Lock()
	queues := make([]string, 0, len(c.queues))
	for q := range c.queues {
		queues = append(queues, q)
	}
	c.mu.Unlock()
	deleteTopology(t, c.url, c.name, c.partitions, queues...)
}

// deleteTopology deletes what transports named name declared for queues.
func deleteTopology(t testing.TB, url, name string, partitions int, queues ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := rabbitmq.Dial(ctx, url, rabbitmq.WithName(name), rabbitmq.WithPartitions(partitions), rabbitmq.WithLogger(quietLogger()))
	if err != nil {
		t.Logf("cleanup: dial: %v", err)
		return
	}
	defer tr.Close()
	if err := tr.DeleteTopology(ctx, queues...); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// recorded is a transport that tells its cleaner what it declares.
type recorded struct {
	*rabbitmq.Transport
	c *cleaner
}

func (r recorded) Declare(ctx context.Context, q transport.Queue) error {
	r.c.add(q.Name)
	return r.Transport.Declare(ctx, q)
}

var features = transporttest.Features{
	Partitions:        4,
	DeliveryLimit:     4,
	MaxMessageSize:    64 << 10,
	RedeliveryTimeout: 30 * time.Second,
	QuietPeriod:       500 * time.Millisecond,
	Persistent:        true,
}

func TestTransport(t *testing.T) {
	u := testenv.RabbitMQ(t)
	name := "sagaflow-tt-" + randomID(t)
	c := newCleaner(t, u, name, features.Partitions)
	start := time.Now()
	t.Cleanup(func() { t.Logf("conformance suite took %v", time.Since(start).Round(time.Millisecond)) })
	transporttest.Run(t, func(t *testing.T) transport.Transport {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		tr, err := rabbitmq.Dial(ctx, u,
			rabbitmq.WithName(name),
			rabbitmq.WithPartitions(features.Partitions),
			rabbitmq.WithDeliveryLimit(features.DeliveryLimit),
			rabbitmq.WithMaxMessageSize(features.MaxMessageSize),
			rabbitmq.WithLogger(quietLogger()),
		)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		return recorded{tr, c}
	}, features)
}

func TestReadyAndClose(t *testing.T) {
	u := testenv.RabbitMQ(t)
	name := "sagaflow-rc-" + randomID(t)
	newCleaner(t, u, name, 1)
	tr, err := rabbitmq.Dial(t.Context(), u, rabbitmq.WithName(name), rabbitmq.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Ready(); err != nil {
		t.Fatalf("Ready after Dial = %v, want nil", err)
	}
	if err := tr.PublishReady(); err != nil {
		t.Fatalf("PublishReady after Dial = %v, want nil", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := tr.Ready(); err == nil {
		t.Fatal("Ready after Close = nil, want an error")
	}
	if err := tr.PublishReady(); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("PublishReady after Close = %v, want transport.ErrClosed", err)
	}
}

// TestNoGoroutinesLeft: after Close, every goroutine the transport started
// (notification drainers, consumer readers, publish writes) has ended.
func TestNoGoroutinesLeft(t *testing.T) {
	u := testenv.RabbitMQ(t)
	name := "sagaflow-gl-" + randomID(t)
	c := newCleaner(t, u, name, 2)
	before := runtime.NumGoroutine()
	ctx := t.Context()
	tr, err := rabbitmq.Dial(ctx, u, rabbitmq.WithName(name), rabbitmq.WithPartitions(2), rabbitmq.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	q := "gl-" + randomID(t)
	c.add(q)
	if err := tr.Declare(ctx, transport.Queue{Name: q}); err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{}, 10)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- tr.Consume(cctx, q, 4, func(ctx context.Context, d transport.Delivery) {
			_ = d.DeadLetter(ctx, errors.New("leak test"))
			got <- struct{}{}
		})
	}()
	e := message.Envelope{ID: message.NewID(), Kind: message.KindCommand, Type: "gl.Do.v1", Source: "test",
		Destination: q, Key: "k", OccurredAt: time.Now(), Payload: json.RawMessage(`{}`)}
	if err := tr.Publish(ctx, e); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery")
	}
	if _, err := tr.DeadLetters(ctx, 10); err != nil {
		t.Fatal(err)
	}
	stop()
	<-done
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	var after int
	if !within(5*time.Second, func() bool { after = runtime.NumGoroutine(); return after <= before }) {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines before Dial, %d after Close:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// BenchmarkPublishConsumeAck measures the round trip through the broker:
// 16 goroutines publish (each waits for its confirm) over 64 keys on 4
// partitions; one Consume with prefetch 64 acks every delivery. It reports
// messages/s.
func BenchmarkPublishConsumeAck(b *testing.B) {
	u := os.Getenv("SAGAFLOW_AMQP_URL")
	if u == "" {
		u = testenv.DefaultAMQPURL
	}
	name := "sagaflow-bench-" + randomID(b)
	ctx := context.Background()
	tr, err := rabbitmq.Dial(ctx, u, rabbitmq.WithName(name), rabbitmq.WithPartitions(4), rabbitmq.WithLogger(quietLogger()))
	if err != nil {
		testenv.Unavailable(b, "broker: %v", err) // fails under CI=true
	}
	q := "bench-" + randomID(b)
	defer func() {
		_ = tr.Close()
		deleteTopology(b, u, name, 4, q)
	}()
	if err := tr.Declare(ctx, transport.Queue{Name: q}); err != nil {
		b.Fatal(err)
	}
	var acked atomic.Int64
	done := make(chan struct{})
	target := int64(b.N)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = tr.Consume(cctx, q, 64, func(ctx context.Context, d transport.Delivery) {
			if d.Ack(ctx) == nil && acked.Add(1) == target {
				close(done)
			}
		})
	}()
	payload := json.RawMessage(`{"customer":"c","note":"` + strings.Repeat("x", 256) + `"}`)
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				e := message.Envelope{ID: message.NewID(), Kind: message.KindCommand, Type: "bench.Do.v1", Source: "bench",
					Destination: q, Key: "k" + itoa(int(i%64)), OccurredAt: time.Now(), Payload: payload}
				if err := tr.Publish(ctx, e); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	published := b.Elapsed()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("%d of %d acked", acked.Load(), b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/published.Seconds(), "published/s")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
