package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/client"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
	"github.com/sagaflow/sagaflow/workflows"
)

// orderLoad drives n order sagas through the admin APIs of daemon
// processes, for the tests that run real `sagaflow serve` processes
// (scale-out, broker faults, a SIGKILL with sagas in flight). Saga i is
// "<prefix>-<i>"; every fifth one ships to the unreachable address, so it
// fails its last step and is compensated.
type orderLoad struct {
	prefix string
	n      int
	// node returns the admin client to use for attempt try of a call
	// (round-robin over the nodes that are alive).
	node func(try int) *client.Client
	// started, when set, is called after each acknowledged start with
	// the number acknowledged so far.
	started func(count int64)
	// closedLoop makes each client wait for its saga to finish before it
	// starts the next one, so that the store sees a bounded load.
	closedLoop bool
}

func (l orderLoad) id(i int) string    { return fmt.Sprintf("%s-%04d", l.prefix, i) }
func (l orderLoad) failing(i int) bool { return i%5 == 0 }

func (l orderLoad) request(i int) engine.StartRequest {
	in := orders.Input{OrderID: l.id(i), SKU: "sku", Qty: 1, Amount: 10, Address: "street"}
	if l.failing(i) {
		in.Address = orders.Unreachable
	}
	raw, err := json.Marshal(in)
	if err != nil {
		panic(err) // a plain struct: cannot fail
	}
	return engine.StartRequest{Workflow: orders.WorkflowName, Input: raw, ID: in.OrderID}
}

// run starts every saga from clients goroutines and fails the test (it
// must be called from the test's goroutine) for each saga that start
// reports.
func (l orderLoad) run(t *testing.T, clients int) {
	t.Helper()
	for _, err := range l.start(clients) {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// start starts every saga from clients goroutines. A start that fails (a
// node killed, a broker or store that is slow to answer) is retried on
// the next node with the same saga ID, the idempotency key, for up to two
// minutes. It returns an error for each saga that could not be started
// or, in a closed loop, did not finish within five minutes.
func (l orderLoad) start(clients int) []error {
	work := make(chan int, l.n)
	for i := range l.n {
		work <- i
	}
	close(work)
	return l.drive(clients, work)
}

// startUntil is a continuous load: clients goroutines start sagas 0, 1,
// 2, ... as start does, until stop is closed (each then finishes the saga
// it is on). It returns the load with n set to the number of sagas
// started or tried, and the errors.
func (l orderLoad) startUntil(clients int, stop <-chan struct{}) (orderLoad, []error) {
	work := make(chan int)
	fed := make(chan int, 1)
	go func() {
		defer close(work)
		i := 0
		defer func() { fed <- i }()
		for ; ; i++ {
			select {
			case work <- i:
			case <-stop:
				return
			}
		}
	}()
	errs := l.drive(clients, work)
	l.n = <-fed
	return l, errs
}

// drive runs the sagas whose numbers come from work (until it is closed)
// from clients goroutines; see start.
func (l orderLoad) drive(clients int, work <-chan int) []error {
	ctx := context.Background()
	var (
		wg    sync.WaitGroup
		acked atomic.Int64
		mu    sync.Mutex
		out   []error
	)
	report := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		out = append(out, err)
	}
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				var err error
				giveUp := time.Now().Add(2 * time.Minute)
				for try := 0; ; try++ {
					sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					_, err = l.node(i+try).Start(sctx, l.request(i))
					cancel()
					if err == nil || time.Now().After(giveUp) {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if err != nil {
					report(fmt.Errorf("start %s: %w", l.id(i), err))
					continue
				}
				if l.started != nil {
					l.started(acked.Add(1))
				}
				if l.closedLoop {
					if err := l.waitFinished(ctx, l.id(i), 5*time.Minute); err != nil {
						report(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// waitFinished polls saga id until it is terminal or needs attention, for
// at most limit. Errors of single polls (a node that was just killed, a
// slow store, a broker outage) are retried on the next node.
func (l orderLoad) waitFinished(ctx context.Context, id string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var (
		last    engine.Saga
		lastErr error
	)
	for try := 0; time.Now().Before(deadline); try++ {
		gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		s, err := l.node(try).Get(gctx, id)
		cancel()
		if err == nil && (s.Status.Terminal() || s.Status == workflows.StatusNeedsAttention) {
			return nil
		}
		last, lastErr = s, err
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("saga %s not finished within %v: last status %q, last error %v", id, limit, last.Status, lastErr)
}

// waitAllFinished waits, for at most limit, until the nodes list no
// running or compensating saga, logging progress every 30 seconds. A list
// that fails is tried again on the next node.
func (l orderLoad) waitAllFinished(t *testing.T, limit time.Duration) {
	t.Helper()
	ctx := context.Background()
	began := time.Now()
	var lastLog time.Time
	for try := 0; ; try++ {
		c := l.node(try)
		left, err := c.List(ctx, runningSagas(1000))
		if err == nil && len(left.Sagas) == 0 {
			t.Logf("all %d sagas finished %v after the wait began", l.n, time.Since(began).Round(time.Millisecond))
			return
		}
		if time.Since(began) > limit {
			if err != nil {
				t.Fatalf("sagas not seen finished within %v; last list: %v", limit, err)
			}
			stuck, _ := c.Get(ctx, left.Sagas[0].ID)
			t.Fatalf("%d sagas still unfinished after %v, e.g. %s: %s, step %q, history %+v", len(left.Sagas), limit, stuck.ID, stuck.Status, stuck.Step, stuck.History)
		}
		if time.Since(lastLog) > 30*time.Second {
			lastLog = time.Now()
			t.Logf("%v: %d unfinished (list error: %v)", time.Since(began).Round(time.Second), len(left.Sagas), err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkStatuses fails the test for every saga whose status is not the
// expected one: completed, or compensated for the failing ones.
func (l orderLoad) checkStatuses(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for i := range l.n {
		s, err := l.node(i).Get(ctx, l.id(i))
		for try := 0; err != nil && try < 10; try++ {
			time.Sleep(time.Second)
			s, err = l.node(i+try+1).Get(ctx, l.id(i))
		}
		if err != nil {
			t.Fatalf("get %s: %v", l.id(i), err)
		}
		want := workflows.StatusCompleted
		if l.failing(i) {
			want = workflows.StatusCompensated
		}
		if s.Status != want {
			t.Errorf("saga %s: status %s (%s), want %s", l.id(i), s.Status, s.Error, want)
		}
	}
}

// checkEffects fails the test unless every participant stream in st holds
// exactly the events its saga should have caused, once each, in order.
func (l orderLoad) checkEffects(t *testing.T, st store.Store) {
	t.Helper()
	for i := range l.n {
		want := completedEffects
		if l.failing(i) {
			want = shippingFailedEffects
		}
		checkEffects(t, st, l.id(i), want)
	}
}

// runningSagas lists up to limit sagas that are running or compensating.
func runningSagas(limit int) engine.ListRequest {
	return engine.ListRequest{Status: []workflows.Status{workflows.StatusRunning, workflows.StatusCompensating}, Limit: limit}
}

// stopAndOpenStore lets late duplicates reach the participants, stops the
// daemon d with SIGTERM and opens the embedded store it kept in dir, for
// the effects check; the store is closed when the test ends.
func stopAndOpenStore(t *testing.T, d *daemonProcess, dir string) store.Store {
	t.Helper()
	time.Sleep(3 * time.Second)
	stopDaemon(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := embedded.Open(ctx, dir)
	if err != nil {
		t.Fatalf("open the engine's store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// stopDaemon stops d with SIGTERM (a graceful stop) and waits for it; the
// test fails if it does not exit cleanly.
func stopDaemon(t *testing.T, d *daemonProcess) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("daemon exit after SIGTERM: %v", err)
	}
}
