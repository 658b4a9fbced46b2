package inmem_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/transport/transporttest"
)

// features is how newTransport configures the transports the suite gets.
var features = transporttest.Features{
	Partitions:        4,
	DeliveryLimit:     4,
	MaxMessageSize:    64 << 10,
	RedeliveryTimeout: 5 * time.Second,
	QuietPeriod:       50 * time.Millisecond,
	RetryDelay:        100 * time.Millisecond,
}

func newTransport(t *testing.T, opts ...inmem.Option) *inmem.Transport {
	t.Helper()
	base := []inmem.Option{
		inmem.WithPartitions(features.Partitions),
		inmem.WithDeliveryLimit(features.DeliveryLimit),
		inmem.WithMaxMessageSize(features.MaxMessageSize),
		inmem.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	}
	tr := inmem.New(append(base, opts...)...)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func TestTransport(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transport.Transport { return newTransport(t) }, features)
}

// BenchmarkPublishConsumeAck measures the round trip of one queue: publish
// from one goroutine over 64 keys, consume with prefetch 64 and ack each
// delivery in the handler. It reports messages/s.
func BenchmarkPublishConsumeAck(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := inmem.New(inmem.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer tr.Close()
	if err := tr.Declare(ctx, transport.Queue{Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	var acked atomic.Int64
	done := make(chan struct{})
	target := int64(b.N)
	go func() {
		_ = tr.Consume(ctx, "bench", 64, func(ctx context.Context, d transport.Delivery) {
			if err := d.Ack(ctx); err != nil {
				b.Error(err)
			}
			if acked.Add(1) == target {
				close(done)
			}
		})
	}()
	payload := json.RawMessage(`{"customer":"c","note":"` + strings.Repeat("x", 256) + `"}`)
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprintf("customer-%d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		e := message.Envelope{
			ID: message.NewID(), Kind: message.KindCommand, Type: "bench.DoThing.v1", Source: "bench",
			Destination: "bench", Key: keys[i%len(keys)], OccurredAt: time.Now(), Payload: payload,
		}
		if err := tr.Publish(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("%d of %d messages acked after a minute", acked.Load(), b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
