package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/client"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	mongostore "github.com/sagaflow/sagaflow/store/mongo"
	"github.com/sagaflow/sagaflow/workflows"
)

// The crash test runs the engine in a child process (this test binary,
// re-executed) so that it can be killed with SIGKILL: no deferred close, no
// flush, exactly what a crash leaves.
const (
	envCrashChild = "SAGAFLOW_TEST_CRASH_CHILD"
	envCrashDir   = "SAGAFLOW_TEST_CRASH_DIR"
	envCrashMongo = "SAGAFLOW_TEST_CRASH_MONGO_DB"
	envCrashURL   = "SAGAFLOW_TEST_CRASH_URL_FILE"
)

// crashRetry keeps the failing orders in flight long enough to be crashed.
var crashRetry = workflows.RetryPolicy{MaxAttempts: 3, InitialInterval: 150 * time.Millisecond, MaxInterval: 300 * time.Millisecond, Multiplier: 2}

func TestMain(m *testing.M) {
	if os.Getenv(envCrashChild) == "1" {
		os.Exit(runCrashChild())
	}
	if os.Getenv(envParticipantChild) == "1" {
		os.Exit(runParticipantChild())
	}
	os.Exit(m.Run())
}

// runCrashChild runs the order engine until SIGTERM, writing its admin URL
// to the file the parent named.
func runCrashChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	opts := engine.Options{DataDir: os.Getenv(envCrashDir), AdminAddr: "127.0.0.1:0", Logger: quietLogger()}
	if db := os.Getenv(envCrashMongo); db != "" {
		st, err := mongostore.Open(ctx, os.Getenv("SAGAFLOW_MONGO_URI"), mongostore.WithDatabase(db))
		if err != nil {
			fmt.Fprintln(os.Stderr, "child engine: open MongoDB:", err)
			return 1
		}
		defer st.Close()
		opts.Store = st
	}
	// Step timeouts far beyond the test's deadline: a message lost in the
	// crash must show as a saga that never finishes (and fail the test),
	// not be absorbed by a timeout and a compensation.
	e := orders.RegisterWith(engine.New(opts), orders.WorkflowWithTimeout(crashRetry, time.Hour))
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	select {
	case err := <-done:
		fmt.Fprintln(os.Stderr, "child engine:", err)
		return 1
	case <-e.Ready():
	}
	urlFile := os.Getenv(envCrashURL)
	if err := os.WriteFile(urlFile+".tmp", []byte(e.AdminURL()), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.Rename(urlFile+".tmp", urlFile); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "child engine:", err)
		return 1
	}
	return 0
}

type childEngine struct {
	cmd *exec.Cmd
	url string
}

// startChild starts a child engine on ts; env adds variables (see
// scaleout_test.go).
func startChild(t *testing.T, ts testStore, name string, env ...string) *childEngine {
	t.Helper()
	urlFile := filepath.Join(t.TempDir(), name+".url")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envCrashChild+"=1", envCrashDir+"="+ts.dir, envCrashMongo+"="+ts.mongoDB, envCrashURL+"="+urlFile)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child engine: %v", err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if data, err := os.ReadFile(urlFile); err == nil {
			return &childEngine{cmd: cmd, url: string(data)}
		}
		if time.Now().After(deadline) {
			t.Fatalf("child engine %s not ready within 20s", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCrashRecoveryFinishesEverySagaWithEffectsExactlyOnce(t *testing.T) {
	forEachStore(t, testCrashRecovery)
}

func testCrashRecovery(t *testing.T, ts testStore) {
	const sagas = 200
	ctx := context.Background()
	first := startChild(t, ts, "first")
	c := client.New(first.url)

	failing := func(i int) bool { return i%5 == 0 }
	input := func(i int) engine.StartRequest {
		in := orders.Input{OrderID: fmt.Sprintf("crash-%03d", i), SKU: "sku", Qty: 1, Amount: 10, Address: "street"}
		if failing(i) {
			in.Address = orders.Unreachable
		}
		raw, _ := json.Marshal(in)
		return engine.StartRequest{Workflow: orders.WorkflowName, Input: raw, ID: in.OrderID}
	}
	// Start the sagas from 8 clients and kill the engine with SIGKILL while
	// they are still being started and run, so that commands, replies and
	// outbox entries are in flight. A client whose start failed retries it
	// against the restarted engine (the saga ID is the idempotency key).
	const killAfter = sagas * 3 / 5
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		started  int
		retry    []int
		killOnce sync.Once
	)
	kill := func() {
		killOnce.Do(func() {
			if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Errorf("kill: %v", err)
			}
		})
	}
	work := make(chan int, sagas)
	for i := range sagas {
		work <- i
	}
	close(work)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				_, err := c.Start(ctx, input(i))
				mu.Lock()
				if err != nil {
					retry = append(retry, i)
				} else if started++; started == killAfter {
					kill()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	kill()
	_ = first.cmd.Wait()
	t.Logf("killed the engine after %d of %d starts had been acknowledged", started, sagas)

	second := startChild(t, ts, "second")
	c = client.New(second.url)
	for _, i := range retry {
		if _, err := c.Start(ctx, input(i)); err != nil {
			t.Fatalf("start %d again after the restart: %v", i, err)
		}
	}
	// On MongoDB a crash can leave a commit whose derived documents (head,
	// pending outbox, timers) are repaired only once they are 30s old, so
	// allow for that.
	wait := 60 * time.Second
	if ts.kind == "mongo" {
		wait = 180 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		left, err := c.List(ctx, engine.ListRequest{Status: []workflows.Status{workflows.StatusRunning, workflows.StatusCompensating}, Limit: 1000})
		if err != nil {
			t.Fatalf("list after restart: %v", err)
		}
		if len(left.Sagas) == 0 {
			break
		}
		if time.Now().After(deadline) {
			stuck, _ := c.Get(ctx, left.Sagas[0].ID)
			t.Fatalf("%d sagas still unfinished %v after restart, e.g. %s: %s, step %q, history %+v", len(left.Sagas), wait, stuck.ID, stuck.Status, stuck.Step, stuck.History)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range sagas {
		id := fmt.Sprintf("crash-%03d", i)
		s, err := c.Get(ctx, id)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		want := workflows.StatusCompleted
		if failing(i) {
			want = workflows.StatusCompensated
		}
		if s.Status != want {
			t.Errorf("saga %s: status %s (%s), want %s", id, s.Status, s.Error, want)
		}
	}
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.cmd.Wait(); err != nil {
		t.Fatalf("child engine exit after SIGTERM: %v", err)
	}

	st := ts.open(t)
	for i := range sagas {
		want := completedEffects
		if failing(i) {
			want = shippingFailedEffects
		}
		checkEffects(t, st, fmt.Sprintf("crash-%03d", i), want)
	}
}
