package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/workflows"
)

// Shared pieces of the fault-injection tests (issue 11), in
// faults_*_test.go. Each test names the item of the issue it proves; the
// table in docs/ARCHITECTURE.md ("What each fault test proves") lists them
// with the older tests that prove the other items.

// longTimeout is the step timeout of the fault tests' order saga: far
// beyond any test's deadline, so that a message lost to a fault shows as a
// saga that never finishes (and fails the test) instead of being absorbed
// by a timeout and a compensation.
const longTimeout = time.Hour

// soak scales a fault test's load: n normally, 10n with SAGAFLOW_SOAK=1
// (the longer soak runs; the waits scale with it).
func soak(n int) int {
	if os.Getenv("SAGAFLOW_SOAK") == "1" {
		return 10 * n
	}
	return n
}

// batchSize is a batch test's load on store kind: half on MongoDB (the
// FerretDB dev server is about ten times slower than the embedded store;
// the point there is the other store's code path, not the volume).
func batchSize(kind string, n int) int {
	if kind == "mongo" {
		n /= 2
	}
	return soak(n)
}

// soakWait scales a wait like soak scales the load.
func soakWait(d time.Duration) time.Duration { return time.Duration(soak(1)) * d }

// orderBatch is n orders named prefix-000...; every fifth one ships to an
// unreachable address, so it is compensated after its retries.
type orderBatch struct {
	prefix string
	n      int
}

func (b orderBatch) id(i int) string    { return fmt.Sprintf("%s-%03d", b.prefix, i) }
func (b orderBatch) failing(i int) bool { return i%5 == 0 }

func (b orderBatch) input(i int) orders.Input {
	in := orders.Input{OrderID: b.id(i), SKU: "sku", Qty: 1, Amount: 10, Address: "street"}
	if b.failing(i) {
		in.Address = orders.Unreachable
	}
	return in
}

// noBreaker switches the engine's circuit breakers off. A fault test's
// batch fails every fifth saga's shipping on purpose (three technical
// failures each, then compensation); when those failures come in a row,
// as they do when work piles up behind a fault, ten of them open the
// shipping circuit for 30s and every saga then waits for the circuit, not
// for the fault the test is about (seen: TestParticipantSIGKILLMidHandling
// timing out with the sagas paused on the open circuit). The breaker has
// tests of its own.
var noBreaker = engine.CircuitSettings{Failures: -1}

// newFaultEngine runs the order engine with the long step timeout and,
// unless opts configures circuits, no circuit breakers (see noBreaker).
func newFaultEngine(t *testing.T, opts engine.Options) *engine.Engine {
	t.Helper()
	if opts.DataDir == "" && opts.Store == nil {
		opts.DataDir = t.TempDir()
	}
	if opts.AdminAddr == "" {
		opts.AdminAddr = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if opts.Circuit == (engine.CircuitSettings{}) && len(opts.Circuits) == 0 {
		opts.Circuit = noBreaker
	}
	e := orders.RegisterWith(engine.New(opts), orders.WorkflowWithTimeout(fastRetry, longTimeout))
	if err := e.Err(); err != nil {
		t.Fatalf("register: %v", err)
	}
	runEngine(t, e)
	return e
}

// startAll starts the batch's sagas with their order ID as saga ID (so a
// start repeated after a fault finds the same saga) from 4 goroutines; it
// returns the indexes whose start failed.
func (b orderBatch) startAll(t *testing.T, e *engine.Engine) []int {
	t.Helper()
	var (
		mu     sync.Mutex
		failed []int
		wg     sync.WaitGroup
	)
	work := make(chan int, b.n)
	for i := range b.n {
		work <- i
	}
	close(work)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := b.start(e, i); err != nil {
					mu.Lock()
					failed = append(failed, i)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return failed
}

func (b orderBatch) start(e *engine.Engine, i int) error {
	raw, err := json.Marshal(b.input(i))
	if err != nil {
		return err
	}
	_, err = e.Start(context.Background(), engine.StartRequest{Workflow: orders.WorkflowName, Input: raw, ID: b.id(i), CorrelationID: b.id(i)})
	return err
}

// waitAll waits until every saga of the batch has finished and checks
// each one's status and each participant's effects: exactly once.
func (b orderBatch) waitAll(t *testing.T, e *engine.Engine, st store.Store, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for i := range b.n {
		s, err := e.WaitSaga(ctx, b.id(i))
		if err != nil {
			got, _ := e.GetSaga(context.Background(), b.id(i))
			t.Fatalf("saga %s not finished within %v: %v (status %s, step %q)", b.id(i), within, err, got.Status, got.Step)
		}
		want := workflows.StatusCompleted
		if b.failing(i) {
			want = workflows.StatusCompensated
		}
		if s.Status != want {
			t.Errorf("saga %s: status %s (%s), want %s", s.ID, s.Status, s.Error, want)
		}
	}
	b.checkEffects(t, st)
}

func (b orderBatch) checkEffects(t *testing.T, st store.Store) {
	t.Helper()
	for i := range b.n {
		want := completedEffects
		if b.failing(i) {
			want = shippingFailedEffects
		}
		checkEffects(t, st, b.id(i), want)
	}
}

// settleAudit is a transport whose deliveries report every settle to a
// function (before passing it on), so a test can check what was acked.
type settleAudit struct {
	transport.Transport
	onAck func(e deliveryInfo)
}

type deliveryInfo struct {
	ID, Type, Key string
}

func (a *settleAudit) Consume(ctx context.Context, queue string, prefetch int, h transport.Handler) error {
	return a.Transport.Consume(ctx, queue, prefetch, func(ctx context.Context, d transport.Delivery) {
		h(ctx, &auditedDelivery{Delivery: d, a: a})
	})
}

type auditedDelivery struct {
	transport.Delivery
	a *settleAudit
}

func (d *auditedDelivery) Ack(ctx context.Context) error {
	e := d.Envelope()
	d.a.onAck(deliveryInfo{ID: e.ID, Type: e.Type, Key: e.Key})
	return d.Delivery.Ack(ctx)
}
