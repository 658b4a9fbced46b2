package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
)

// TestGracefulShutdownUnderLoadLosesNothing proves issue 11 item 12: the
// engine is stopped gracefully (its context cancelled, as SIGTERM does)
// while 60 sagas are being started and run, then a new engine is started
// on the same data. Everything the first one took is finished by the
// second: every saga ends as it should, every effect exactly once. The
// in-process transport does not outlive the first engine, so whatever was
// queued there is recovered from the store (outbox relay, saga resume,
// durable timers). engine/shutdown_test.go proves the single-step cases
// (an in-flight step finishes and commits; one past the deadline runs
// again).
func TestGracefulShutdownUnderLoadLosesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, ts testStore) {
		opts := ts.options(t)
		opts.AdminAddr, opts.Logger, opts.ShutdownTimeout = "127.0.0.1:0", quietLogger(), 5*time.Second
		first := orders.RegisterWith(engine.New(opts), orders.WorkflowWithTimeout(fastRetry, longTimeout))
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- first.Run(ctx) }()
		select {
		case <-first.Ready():
		case err := <-done:
			t.Fatalf("first engine: %v", err)
		}

		begin := time.Now()
		b := orderBatch{prefix: "stop", n: batchSize(ts.kind, 60)}
		started := make(chan int, b.n)
		go func() {
			defer close(started)
			for i := range b.n {
				if err := b.start(first, i); err != nil {
					return // the engine is stopping: the rest start on the second
				}
				started <- i
				if i == b.n/2 {
					stop()
				}
			}
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("graceful stop: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("first engine did not stop within 30s")
		}
		stop()
		n := 0
		for range started {
			n++
		}
		t.Logf("%d sagas started before the stop; started and stopped in %v", n, time.Since(begin).Round(time.Millisecond))

		second := newFaultEngine(t, ts.options(t))
		for i := range b.n {
			if err := b.start(second, i); err != nil {
				t.Fatalf("start %s on the second engine: %v", b.id(i), err)
			}
		}
		restarted := time.Now()
		b.waitAll(t, second, second.Store(), soakWait(90*time.Second))
		t.Logf("every saga finished %v after the restart", time.Since(restarted).Round(time.Millisecond))
	})
}
