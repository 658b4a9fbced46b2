package engine_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/client"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/internal/testenv"
)

// uniqueName is a RabbitMQ transport name (the prefix of every queue and
// exchange) no other run uses; the topology of the order saga's queues
// under it is deleted when the test ends.
func uniqueName(t *testing.T, amqpURL, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := prefix + "-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		deleteTopology(t, amqpURL, name, name, orders.InventoryService, orders.PaymentService, orders.ShippingService)
	})
	return name
}

// brokerRig is what the process tests that disturb the broker share: the
// broker (with rabbitmqctl at hand), a topology name of their own, the
// daemon's data directory (the embedded store) and the built daemon.
type brokerRig struct {
	amqpURL, name, dir, bin string
}

// newBrokerRig checks the broker and rabbitmqctl, and builds the daemon.
func newBrokerRig(t *testing.T, prefix string) brokerRig {
	t.Helper()
	u := testenv.RabbitMQ(t)
	testenv.RabbitMQCtl(t, 30*time.Second, "await_startup", "--timeout", "30") // rabbitmqctl is there
	return brokerRig{amqpURL: u, name: uniqueName(t, u, prefix), dir: t.TempDir(), bin: buildDaemon(t)}
}

// serveArgs are the `serve` flags of a daemon on the rig, then extra.
func (r brokerRig) serveArgs(extra ...string) []string {
	return append([]string{
		"--name", r.name, "--amqp-url", r.amqpURL, "--data-dir", r.dir,
		"--admin-addr", "127.0.0.1:0", "--partitions", strconv.Itoa(scalePartitions),
	}, extra...)
}

// sizeFromEnv is the integer in environment variable name, or def.
func sizeFromEnv(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// TestSIGKILLWithSagasInFlightOnRabbitMQAndMongoDB proves issue 11 item 1:
// a `sagaflow serve` process on RabbitMQ and MongoDB runs the order saga
// without its participants (as when the services are down), so every saga
// it starts stays in flight: started, most of them with their first
// command sent and awaited. Once 1,000 starts are acknowledged it gets
// SIGKILL, and a new process with the participants is started on the
// same broker and database. Every saga must end with its expected status
// and every participant must hold exactly its expected events: the
// commands and resumes in flight at the kill are redelivered or re-sent
// from the outbox, and duplicates are absorbed. The step timeouts are an
// hour, so a message lost in the crash leaves its saga unfinished and
// fails the test. SAGAFLOW_FAULT_SAGAS changes the count.
func TestSIGKILLWithSagasInFlightOnRabbitMQAndMongoDB(t *testing.T) {
	if testing.Short() {
		t.Skip("runs daemon processes on RabbitMQ and MongoDB: skipped with -short")
	}
	amqpU := testenv.RabbitMQ(t)
	mongoU := testenv.MongoDB(t)
	ts := testStore{kind: "mongo", uri: mongoU, mongoDB: freshDatabase(t, mongoU)}
	name := uniqueName(t, amqpU, "sagaflow-kill")
	bin := buildDaemon(t)
	args := []string{
		"--name", name, "--amqp-url", amqpU, "--mongo-uri", withDatabase(t, mongoU, ts.mongoDB),
		"--admin-addr", "127.0.0.1:0", "--partitions", strconv.Itoa(scalePartitions), "--log-level", "warn",
	}

	first := startDaemonEnv(t, bin, "engine (sagas only)", []string{"SAGAFLOW_TEST_SAGAS_ONLY=1"}, args...)
	var mu sync.Mutex
	node := client.New(first.url)
	load := orderLoad{
		prefix: "kill", n: sizeFromEnv("SAGAFLOW_FAULT_SAGAS", 1000),
		node: func(int) *client.Client { mu.Lock(); defer mu.Unlock(); return node },
	}
	load.run(t, 16)
	ctx := context.Background()
	running, err := node.List(ctx, runningSagas(load.n))
	if err != nil {
		t.Fatalf("list before the kill: %v", err)
	}
	if len(running.Sagas) != load.n {
		t.Fatalf("%d of %d sagas running before the kill, want all (nothing serves their steps)", len(running.Sagas), load.n)
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	_ = first.cmd.Wait()
	t.Logf("SIGKILL with %d of %d sagas unfinished", len(running.Sagas), load.n)

	second := startDaemon(t, bin, "restarted engine, with the participants", args...)
	mu.Lock()
	node = client.New(second.url)
	mu.Unlock()
	load.waitAllFinished(t, 10*time.Minute)
	load.checkStatuses(t)
	time.Sleep(3 * time.Second) // late duplicates reach the participants
	stopDaemon(t, second)
	load.checkEffects(t, ts.open(t))
}

// TestBrokerFaultsUnderLoad proves issue 11 item 3: while a `sagaflow
// serve` process on RabbitMQ (with the embedded store) runs sagas whose
// participants it hosts, the broker closes every connection
// (`rabbitmqctl close_all_connections`) and later its application is
// stopped and started again (`stop_app` / `start_app`). The engine and its
// participants reconnect by themselves, /readyz reports the outage, and
// every saga ends with its expected status with every participant effect
// exactly once. SAGAFLOW_BROKER_FAULT_SAGAS changes the count (default
// 300).
func TestBrokerFaultsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("disturbs the RabbitMQ broker: skipped with -short")
	}
	rig := newBrokerRig(t, "sagaflow-broker")
	d := startDaemon(t, rig.bin, "engine", rig.serveArgs("--log-level", "warn")...)

	n := sizeFromEnv("SAGAFLOW_BROKER_FAULT_SAGAS", 300)
	faults := make(chan string, 2)
	load := orderLoad{
		prefix: "broker", n: n, closedLoop: true,
		node: func(int) *client.Client { return client.New(d.url) },
		started: func(count int64) {
			switch count {
			case int64(n / 3):
				faults <- "close_all_connections"
			case int64(2 * n / 3):
				faults <- "stop_app"
			}
		},
	}
	// The faults are injected from here, not from the load's goroutines,
	// so that rabbitmqctl's failures are reported on the test.
	var (
		notReady  atomic.Bool
		startErrs []error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		startErrs = load.start(16)
	}()
	for pending := 2; pending > 0; pending-- {
		var what string
		select {
		case what = <-faults:
		case <-done:
			t.Fatalf("the load ended before the faults were injected")
		}
		switch what {
		case "close_all_connections":
			testenv.RabbitMQCtl(t, 30*time.Second, "close_all_connections", "test")
		case "stop_app":
			stopPoll := pollReadiness(d.url, &notReady)
			testenv.RestartRabbitMQApp(t, 3*time.Second)
			stopPoll()
		}
	}
	<-done
	for _, err := range startErrs {
		t.Error(err)
	}
	if !notReady.Load() {
		t.Errorf("/readyz never reported the broker outage")
	}
	load.waitAllFinished(t, 5*time.Minute)
	load.checkStatuses(t)
	st := stopAndOpenStore(t, d, rig.dir)
	load.checkEffects(t, st)
}

// pollReadiness polls base's /readyz every 50ms and sets notReady when it
// answers anything but 200, until the returned stop is called.
func pollReadiness(base string, notReady *atomic.Bool) (stop func()) {
	quit := make(chan struct{})
	finished := make(chan struct{})
	hc := &http.Client{Timeout: 2 * time.Second}
	go func() {
		defer close(finished)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			resp, err := hc.Get(base + "/readyz")
			if err != nil {
				continue
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				notReady.Store(true)
			}
		}
	}()
	return func() { close(quit); <-finished }
}
