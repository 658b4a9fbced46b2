package engine_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
	"github.com/sagaflow/sagaflow/workflows"
)

// envParticipantChild makes the test binary (see TestMain) run only the
// order saga's participants (inventory, payments, shipping) on RabbitMQ,
// with the embedded store in envCrashDir, until SIGTERM.
const envParticipantChild = "SAGAFLOW_TEST_PARTICIPANT_CHILD"

// envParticipantAMQPName is the RabbitMQ transport name (the prefix of
// every queue and exchange) the participant child uses.
const envParticipantAMQPName = "SAGAFLOW_TEST_PARTICIPANT_AMQP_NAME"

// dialNamedTransport dials SAGAFLOW_AMQP_URL (or the default broker) as
// the RabbitMQ transport called name, whose queues and exchanges are all
// named after it, so that test runs and other users of the broker never
// share them.
func dialNamedTransport(ctx context.Context, name string) (*rabbitmq.Transport, error) {
	u := os.Getenv("SAGAFLOW_AMQP_URL")
	if u == "" {
		u = testenv.DefaultAMQPURL
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return rabbitmq.Dial(dctx, u, rabbitmq.WithName(name), rabbitmq.WithLogger(quietLogger()))
}

// slowStore widens the window in which a kill lands in the middle of
// handling: before the commit and between the commit and the ack.
// It counts the duplicates it refused (store.ErrAlreadyHandled): commands
// redelivered after the kill that had been committed before it.
type slowStore struct {
	store.Store
	duplicates *atomic.Int64
}

func (s slowStore) Append(ctx context.Context, c store.Commit) error {
	time.Sleep(3 * time.Millisecond)
	err := s.Store.Append(ctx, c)
	if errors.Is(err, store.ErrAlreadyHandled) {
		s.duplicates.Add(1)
	}
	time.Sleep(3 * time.Millisecond)
	return err
}

func runParticipantChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	st, err := embedded.Open(ctx, os.Getenv(envCrashDir))
	if err != nil {
		fmt.Fprintln(os.Stderr, "participant child: open store:", err)
		return 1
	}
	defer st.Close()
	tr, err := dialNamedTransport(ctx, os.Getenv(envParticipantAMQPName))
	if err != nil {
		fmt.Fprintln(os.Stderr, "participant child: dial RabbitMQ:", err)
		return 1
	}
	defer tr.Close()
	var duplicates atomic.Int64
	e := engine.New(engine.Options{Name: "participants", Store: slowStore{st, &duplicates}, Transport: tr, AdminAddr: "127.0.0.1:0", Logger: quietLogger()}).
		Register(orders.Messages()...).
		Register(orders.Inventory(), orders.Payments(), orders.Shipping())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	select {
	case err := <-done:
		fmt.Fprintln(os.Stderr, "participant child:", err)
		return 1
	case <-e.Ready():
	}
	urlFile := os.Getenv(envCrashURL)
	if err := os.WriteFile(urlFile+".tmp", []byte(e.AdminURL()), 0o600); err == nil {
		err = os.Rename(urlFile+".tmp", urlFile)
	}
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "participant child:", err)
		return 1
	}
	// Tell the parent how many redelivered commands were absorbed.
	_ = os.WriteFile(urlFile+".duplicates", []byte(strconv.FormatInt(duplicates.Load(), 10)), 0o600)
	return 0
}

// startParticipants starts a participant process on dir and RabbitMQ
// topology name, and waits until it runs.
func startParticipants(t *testing.T, dir, name, amqpURL string) (*exec.Cmd, string) {
	t.Helper()
	urlFile := filepath.Join(t.TempDir(), "participants.url")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envParticipantChild+"=1", envCrashDir+"="+dir, envCrashURL+"="+urlFile,
		envParticipantAMQPName+"="+name, "SAGAFLOW_AMQP_URL="+amqpURL)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start participants: %v", err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	waitUntil(t, 30*time.Second, "the participant process to run", func() bool {
		_, err := os.Stat(urlFile)
		return err == nil
	})
	return cmd, urlFile
}

// TestParticipantSIGKILLMidHandling proves issue 11 item 2: the order
// saga's participants run in a process of their own, on RabbitMQ, apart
// from the engine that runs the sagas (in this process). While 60 sagas
// run, the participant process is killed with SIGKILL, in the middle of
// handling commands (its store is slowed so that commits are in flight
// and committed-but-not-acked deliveries exist), then started again on
// the same data. The broker redelivers what was not acked, the restarted
// participants answer duplicates with the reply they recorded, every saga
// finishes as it should, and each participant applied each effect exactly
// once. The step timeouts are an hour, so a lost command or reply would
// leave a saga unfinished and fail the test.
func TestParticipantSIGKILLMidHandling(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a participant process on RabbitMQ: skipped with -short")
	}
	amqpURL := testenv.RabbitMQ(t)
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "sagaflow-faults-" + hex.EncodeToString(b)
	ctx := context.Background()
	tr, err := dialNamedTransport(ctx, name)
	if err != nil {
		t.Fatalf("dial RabbitMQ: %v", err)
	}
	t.Cleanup(func() {
		queues := []string{"sagaflow", "participants", orders.InventoryService, orders.PaymentService, orders.ShippingService}
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := tr.DeleteTopology(dctx, queues...); err != nil {
			t.Logf("cleanup: delete topology %s: %v", name, err)
		}
		_ = tr.Close()
	})
	e := engine.New(engine.Options{DataDir: t.TempDir(), Transport: tr, AdminAddr: "127.0.0.1:0", Logger: quietLogger(), Circuit: noBreaker}).
		Register(orders.Messages()...).
		Register(orders.WorkflowWithTimeout(fastRetry, longTimeout))
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	runEngine(t, e)

	dir := t.TempDir()
	first, _ := startParticipants(t, dir, name, amqpURL)
	batch := orderBatch{prefix: "pkill", n: soak(60)}
	startErr := make(chan error, 1)
	go func() {
		for i := range batch.n {
			if err := batch.start(e, i); err != nil {
				startErr <- fmt.Errorf("start %s: %w", batch.id(i), err)
				return
			}
		}
		startErr <- nil
	}()
	waitUntil(t, 60*time.Second, "15 sagas to complete before the kill", func() bool {
		done, _, err := e.ListSagas(ctx, engine.ListRequest{Status: []workflows.Status{workflows.StatusCompleted}, Limit: 100})
		return err == nil && len(done) >= 15
	})
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	running, _, _ := e.ListSagas(ctx, engine.ListRequest{Status: []workflows.Status{workflows.StatusRunning, workflows.StatusCompensating}, Limit: 100})
	t.Logf("killed the participants with %d sagas unfinished", len(running))
	second, secondURL := startParticipants(t, dir, name, amqpURL)
	if err := <-startErr; err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, soakWait(90*time.Second))
	defer cancel()
	for i := range batch.n {
		s, err := e.WaitSaga(wctx, batch.id(i))
		if err != nil {
			t.Fatalf("saga %s not finished: %v", batch.id(i), err)
		}
		want := workflows.StatusCompleted
		if batch.failing(i) {
			want = workflows.StatusCompensated
		}
		if s.Status != want {
			t.Errorf("saga %s: %s (%s), want %s", s.ID, s.Status, s.Error, want)
		}
	}
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err != nil {
		t.Fatalf("participants after SIGTERM: %v", err)
	}
	if dup, err := os.ReadFile(secondURL + ".duplicates"); err == nil {
		t.Logf("the restarted participants absorbed %s redelivered commands that were committed before the kill", dup)
	}
	st, err := embedded.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	batch.checkEffects(t, st)
}
