package transporttrace_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/telemetry"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/transport/transporttrace"
)

// BenchmarkPublishConsumeAck measures what the decorator costs on the
// in-process transport's round trip (publish, consume, ack): bare, with
// the no-op tracer (the default when no provider is configured), and with
// the SDK recording every span into a batch processor that discards them.
func BenchmarkPublishConsumeAck(b *testing.B) {
	recording := func() *telemetry.Instruments {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		in, _ := telemetry.NewInstruments(tp, nil, nil)
		return in
	}
	for _, c := range []struct {
		name string
		wrap func(transport.Transport) transport.Transport
	}{
		{"bare", func(t transport.Transport) transport.Transport { return t }},
		{"noop", func(t transport.Transport) transport.Transport { return transporttrace.New(t, telemetry.Noop()) }},
		{"recording", func(t transport.Transport) transport.Transport { return transporttrace.New(t, recording()) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			inner := inmem.New(inmem.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			defer inner.Close()
			tr := c.wrap(inner)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if err := tr.Declare(ctx, transport.Queue{Name: "bench"}); err != nil {
				b.Fatal(err)
			}
			var acked atomic.Int64
			done := make(chan struct{})
			target := int64(b.N)
			go func() {
				_ = tr.Consume(ctx, "bench", 64, func(_ context.Context, d transport.Delivery) {
					_ = d.Ack(ctx)
					if acked.Add(1) == target {
						close(done)
					}
				})
			}()
			b.ResetTimer()
			for i := range b.N {
				e := message.Envelope{ID: message.NewID(), Kind: message.KindCommand, Type: "b.Do.v1", Destination: "bench",
					Key: fmt.Sprintf("k%d", i%64), OccurredAt: time.Now(), Payload: []byte(`{}`)}
				if err := tr.Publish(ctx, e); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				b.Fatalf("acked %d of %d", acked.Load(), b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
