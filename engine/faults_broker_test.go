package engine_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"sync"
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
