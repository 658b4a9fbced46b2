package engine_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
	"github.com/sagaflow/sagaflow/workflows"
)

// Tests of issue 11 that change the broker's own settings (its memory
// watermark, its consumer timeout). They run against the broker of
// SAGAFLOW_AMQP_URL, which rabbitmqctl must reach too (RABBITMQ_NODENAME,
// or SAGAFLOW_RABBITMQCTL), and put every setting back in t.Cleanup: in CI
// that broker is shared with the other tests.

// readyz returns the status code and body of e's /readyz.
func readyz(t *testing.T, e *engine.Engine) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.AdminURL()+"/readyz", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestBrokerMemoryAlarmUnderLoad proves issue 11 item 15: while sagas are
// being started and run on RabbitMQ, the broker's memory high watermark is
// set so low that its memory alarm goes off and it blocks every publishing
// connection. A publish then fails within the transport's publish timeout
// with an error that says the broker blocks the connection (it does not
// hang), /readyz answers 503 with that reason, and saga starts still
// succeed without waiting for the broker: the start is committed with its
// first message in the outbox, which the relay publishes once the broker
// lets it (before, each start waited out the publish timeout in its
// dispatch, and each actor did for each message it committed). When the watermark
// is restored the work resumes: every saga finishes with its expected
// status and every participant effect exactly once, nothing
// dead-lettered. The step timeouts are an hour, so a message lost while
// blocked leaves its saga unfinished and fails the test.
func TestBrokerMemoryAlarmUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("sets the broker's memory watermark: skipped with -short")
	}
	amqpURL := testenv.RabbitMQ(t)
	name := uniqueName(t, amqpURL, "sagaflow-memalarm")
	ctx := context.Background()
	const publishTimeout = 3 * time.Second
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	tr, err := rabbitmq.Dial(dctx, amqpURL, rabbitmq.WithName(name), rabbitmq.WithPartitions(scalePartitions),
		rabbitmq.WithPublishTimeout(publishTimeout), rabbitmq.WithLogger(quietLogger()))
	if err != nil {
		t.Fatalf("dial RabbitMQ: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	e := newFaultEngine(t, engine.Options{Name: name, Transport: tr, Partitions: scalePartitions,
		RetryDelay: 200 * time.Millisecond, MaxRetryDelay: time.Second, RelayInterval: 200 * time.Millisecond, TimerInterval: 200 * time.Millisecond})
	if code, body := readyz(t, e); code != http.StatusOK {
		t.Fatalf("readyz before the alarm = %d %s", code, body)
	}

	b := orderBatch{prefix: "memalarm", n: soak(80)}
	var (
		mu           sync.Mutex
		failed       []int
		blocked      atomic.Bool
		whileBlocked int
		slowest      time.Duration
	)
	loadDone := make(chan struct{})
	go func() { // under load: starts go on through the alarm
		defer close(loadDone)
		for i := range b.n {
			during := blocked.Load()
			began := time.Now()
			err := b.start(e, i)
			took := time.Since(began)
			mu.Lock()
			if err != nil {
				failed = append(failed, i)
			}
			if during {
				whileBlocked++
				slowest = max(slowest, took)
			}
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	waitUntil(t, 60*time.Second, "5 sagas to complete before the alarm", func() bool {
		done, _, err := e.ListSagas(ctx, engine.ListRequest{Status: []workflows.Status{workflows.StatusCompleted}, Limit: 100})
		return err == nil && len(done) >= 5
	})

	// Restored whatever happens (this cleanup runs before the engine and
	// the transport stop, which need an unblocked broker to flush).
	t.Cleanup(func() { testenv.RabbitMQCtl(t, 30*time.Second, "set_vm_memory_high_watermark", "0.4") })
	testenv.RabbitMQCtl(t, 30*time.Second, "set_vm_memory_high_watermark", "0.0000001")
	alarmAt := time.Now()
	var body string
	waitUntil(t, 30*time.Second, "/readyz to report the broker blocked", func() bool {
		var code int
		code, body = readyz(t, e)
		return code == http.StatusServiceUnavailable
	})
	blocked.Store(true)
	t.Logf("not ready %v after the alarm: %s", time.Since(alarmAt).Round(time.Millisecond), strings.TrimSpace(body))
	if !strings.Contains(body, "broker blocks") {
		t.Errorf("readyz body %q does not say the broker blocks the connection", body)
	}

	// A direct publish fails within its timeout, saying why.
	began := time.Now()
	_, err = e.Send(ctx, orders.InventoryService, "memalarm-probe", &orders.ReserveStock{OrderID: "memalarm-probe", SKU: "sku", Qty: 1}, nil)
	took := time.Since(began)
	switch {
	case err == nil:
		t.Errorf("a publish while the broker blocks succeeded")
	case !errors.Is(err, rabbitmq.ErrNotReady) || !strings.Contains(err.Error(), "broker blocks"):
		t.Errorf("publish while blocked: %v; want rabbitmq.ErrNotReady saying the broker blocks the connection", err)
	case took > publishTimeout+3*time.Second:
		t.Errorf("publish while blocked failed only after %v (publish timeout %v)", took, publishTimeout)
	}
	t.Logf("publish while blocked failed after %v: %v", took.Round(time.Millisecond), err)

	time.Sleep(2 * publishTimeout) // the broker stays blocked under load
	blocked.Store(false)
	testenv.RabbitMQCtl(t, 30*time.Second, "set_vm_memory_high_watermark", "0.4")
	waitUntil(t, 30*time.Second, "/readyz to report ready again", func() bool {
		code, _ := readyz(t, e)
		return code == http.StatusOK
	})
	t.Logf("ready again %v after the alarm began", time.Since(alarmAt).Round(time.Millisecond))
	<-loadDone
	mu.Lock()
	retry := append([]int(nil), failed...)
	t.Logf("%d starts began while the broker blocked, the slowest took %v", whileBlocked, slowest.Round(time.Millisecond))
	if whileBlocked == 0 {
		t.Errorf("no saga was started while the broker blocked: the load did not overlap the alarm")
	}
	if slowest >= publishTimeout {
		t.Errorf("a start while the broker blocked took %v: it waited out the publish timeout (%v) instead of leaving the publish to the outbox relay", slowest, publishTimeout)
	}
	mu.Unlock()
	for _, i := range retry {
		if err := b.start(e, i); err != nil {
			t.Fatalf("start %s after the alarm: %v", b.id(i), err)
		}
	}
	b.waitAll(t, e, e.Store(), soakWait(90*time.Second))
	t.Logf("%d starts failed during the alarm; transport reconnects: %d", len(retry), tr.Reconnects())
	if dls, _ := tr.DeadLetters(ctx, 10); len(dls) != 0 {
		t.Errorf("dead letters: %+v", dls)
	}
}
