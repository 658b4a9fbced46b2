package actors

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWorkerPoolReusesAWaitingWorker: runs scheduled one after the other
// all go to the one pooled worker, which ends once idle.
func TestWorkerPoolReusesAWaitingWorker(t *testing.T) {
	p := newWorkerPool(8, time.Minute, 300)
	for i := range 100 {
		done := make(chan struct{})
		p.Schedule(func() { close(done) })
		<-done
		waitFor(t, "the worker to wait for work again", func() bool { return p.waiting.Load() == 1 })
		if n := p.workers.Load(); n != 1 {
			t.Fatalf("after run %d: %d pooled workers, want the one reused", i, n)
		}
	}

	short := newWorkerPool(8, 50*time.Millisecond, 300)
	done := make(chan struct{})
	short.Schedule(func() { close(done) })
	<-done
	waitFor(t, "the idle worker to end", func() bool { return short.workers.Load() == 0 })
}

// TestWorkerPoolRunsEveryScheduledFunctionOnceBeyondItsSize: with more
// runs blocked at once than the pool has workers, the rest run on
// goroutines of their own; every run happens exactly once, and the pool
// never holds more than its maximum.
func TestWorkerPoolRunsEveryScheduledFunctionOnceBeyondItsSize(t *testing.T) {
	const max, blocked = 3, 10
	p := newWorkerPool(max, time.Minute, 300)
	gate := make(chan struct{})
	var started, ran atomic.Int64
	for range blocked {
		p.Schedule(func() {
			started.Add(1)
			<-gate
			ran.Add(1)
		})
	}
	waitFor(t, "every blocked run to start", func() bool { return started.Load() == blocked })
	if n := p.workers.Load(); n != max {
		t.Errorf("%d pooled workers with %d runs blocked, want the maximum %d", n, blocked, max)
	}
	close(gate)
	waitFor(t, "every blocked run to return", func() bool { return ran.Load() == blocked })

	// Many schedulers at once: each function runs exactly once.
	const n = 20000
	counts := make([]atomic.Int32, n)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 8 {
				p.Schedule(func() { counts[i].Add(1) })
			}
		}()
	}
	wg.Wait()
	waitFor(t, "every function to run", func() bool {
		for i := range counts {
			if counts[i].Load() == 0 {
				return false
			}
		}
		return true
	})
	for i := range counts {
		if c := counts[i].Load(); c != 1 {
			t.Fatalf("function %d ran %d times, want once", i, c)
		}
	}
	if w := p.workers.Load(); w > max {
		t.Errorf("%d pooled workers, more than the maximum %d", w, max)
	}
	if p.Throughput() != 300 {
		t.Errorf("throughput %d, want 300", p.Throughput())
	}
}
