package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/participant"
	"github.com/sagaflow/sagaflow/store/embedded"
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

// previousWatermark returns the rabbitmqctl arguments that put the
// broker's memory high watermark back as it is now (a fraction, or an
// absolute number of bytes); the default, 0.4, when it cannot tell.
func previousWatermark(t *testing.T) []string {
	t.Helper()
	out := strings.TrimSpace(testenv.RabbitMQCtlOutput(t, 30*time.Second, "eval", "vm_memory_monitor:get_vm_memory_high_watermark()."))
	if _, err := strconv.ParseFloat(out, 64); err == nil {
		return []string{"set_vm_memory_high_watermark", out}
	}
	if m := regexp.MustCompile(`^\{absolute,(\d+)\}$`).FindStringSubmatch(out); m != nil {
		return []string{"set_vm_memory_high_watermark", "absolute", m[1]}
	}
	t.Logf("memory high watermark %q not understood: 0.4 will be restored", out)
	return []string{"set_vm_memory_high_watermark", "0.4"}
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
	restore := previousWatermark(t)
	t.Cleanup(func() { testenv.RabbitMQCtl(t, 30*time.Second, restore...) })
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
	testenv.RabbitMQCtl(t, 30*time.Second, restore...)
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

// consumerTimeout is the broker's consumer timeout in the long-step test.
const consumerTimeout = 3 * time.Second

// setRabbitEnv sets the broker's application setting key (of the rabbit
// application) to the integer value and puts the previous value back
// when the test ends.
func setRabbitEnv(t *testing.T, key string, value int64) {
	t.Helper()
	get := fmt.Sprintf("application:get_env(rabbit, %s).", key)
	prev := strings.TrimSpace(testenv.RabbitMQCtlOutput(t, 30*time.Second, "eval", get))
	var restore string
	if m := regexp.MustCompile(`^\{ok,(\d+)\}$`).FindStringSubmatch(prev); m != nil {
		restore = fmt.Sprintf("application:set_env(rabbit, %s, %s).", key, m[1])
	} else if prev == "undefined" {
		restore = fmt.Sprintf("application:unset_env(rabbit, %s).", key)
	} else {
		t.Fatalf("cannot read the broker's %s: %s answered %q", key, get, prev)
	}
	t.Cleanup(func() { testenv.RabbitMQCtl(t, 30*time.Second, "eval", restore) })
	testenv.RabbitMQCtl(t, 30*time.Second, "eval", fmt.Sprintf("application:set_env(rabbit, %s, %d).", key, value))
	if got, want := strings.TrimSpace(testenv.RabbitMQCtlOutput(t, 30*time.Second, "eval", get)), fmt.Sprintf("{ok,%d}", value); got != want {
		t.Fatalf("%s after set_env: %q, want %q", key, got, want)
	}
	t.Logf("broker %s = %d (was %s)", key, value, prev)
}

// setConsumerTimeout sets the broker's global consumer timeout (RabbitMQ
// 3.10 has no per-queue one) to d, and the interval at which channels
// check it (channel_tick_interval, 60s by default) to a second, and puts
// both back when the test ends. A channel reads the timeout when it is
// opened and the interval when it arms its tick timer, so they apply to
// the connections made after this call.
func setConsumerTimeout(t *testing.T, d time.Duration) {
	t.Helper()
	setRabbitEnv(t, "consumer_timeout", d.Milliseconds())
	setRabbitEnv(t, "channel_tick_interval", 1000)
}

// requireConsumerTimeoutEnforced is the control of the long-step test: a
// plain consumer on a quorum queue that receives a message and never acks
// it must have its channel closed by the broker (406 PRECONDITION_FAILED,
// "delivery acknowledgement ... timed out"). Without it the test could
// pass on a broker that ignores the setting.
func requireConsumerTimeoutEnforced(t *testing.T, amqpURL, queue string) {
	t.Helper()
	conn, err := amqp.DialConfig(amqpURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("control: dial: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("control: channel: %v", err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatalf("control: declare %s: %v", queue, err)
	}
	t.Cleanup(func() {
		c, err := amqp.DialConfig(amqpURL, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err != nil {
			t.Logf("cleanup: dial: %v", err)
			return
		}
		defer c.Close()
		if dch, err := c.Channel(); err == nil {
			if _, err := dch.QueueDelete(queue, false, false, false); err != nil {
				t.Logf("cleanup: delete %s: %v", queue, err)
			}
		}
	})
	pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ch.PublishWithContext(pctx, "", queue, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("never acked")}); err != nil {
		t.Fatalf("control: publish: %v", err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	deliveries, err := ch.Consume(queue, "never-acks", false, false, false, false, nil)
	if err != nil {
		t.Fatalf("control: consume: %v", err)
	}
	select {
	case <-deliveries:
	case <-time.After(10 * time.Second):
		t.Fatal("control: no delivery within 10s")
	}
	got := time.Now()
	select {
	case cerr := <-closed:
		if cerr == nil || cerr.Code != amqp.PreconditionFailed || !strings.Contains(cerr.Reason, "timed out") {
			t.Fatalf("control: channel closed with %v, want 406 PRECONDITION_FAILED for the consumer timeout", cerr)
		}
		t.Logf("control: the broker closed the non-acking consumer's channel %v after the delivery: %s", time.Since(got).Round(time.Millisecond), cerr.Reason)
	case <-time.After(consumerTimeout + 10*time.Second):
		t.Fatalf("control: the channel of a consumer that never acks was still open %v after the delivery: the consumer timeout is not in effect", time.Since(got).Round(time.Second))
	}
}

// shippingRegistry registers the shipping service's messages for a
// participant (the engine registers the same names through
// orders.Messages).
func shippingRegistry(t *testing.T) *message.Registry {
	t.Helper()
	r := message.NewRegistry(nil)
	if err := errors.Join(
		message.Register[orders.ShipOrder](r, "shipping.ShipOrder.v1"),
		message.Register[orders.OrderShipped](r, "shipping.OrderShipped.v1"),
	); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestStepLongerThanConsumerTimeout proves issue 11 item 18: the broker's
// consumer timeout is set to 3s, and the order saga's shipping step is
// served by a participant (the participant SDK, over RabbitMQ, with its
// own transport and store, as a separate service) whose handler takes 2.5
// times that. A control consumer that never acks shows that the broker
// does close channels on this setting. The participant acks each command
// once it has persisted it in its inbox and runs the handler after, so no
// channel of the engine or of the participant is closed by the broker
// (the transports count them) and no connection is lost; every saga
// completes, each shipment applied once.
func TestStepLongerThanConsumerTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("sets the broker's consumer timeout: skipped with -short")
	}
	amqpURL := testenv.RabbitMQ(t)
	setConsumerTimeout(t, consumerTimeout)
	name := uniqueName(t, amqpURL, "sagaflow-ctimeout")
	requireConsumerTimeoutEnforced(t, amqpURL, name+".control")

	ctx := context.Background()
	dial := func() *rabbitmq.Transport {
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		tr, err := rabbitmq.Dial(dctx, amqpURL, rabbitmq.WithName(name), rabbitmq.WithPartitions(scalePartitions), rabbitmq.WithLogger(quietLogger()))
		if err != nil {
			t.Fatalf("dial RabbitMQ: %v", err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	engTr, partTr := dial(), dial()
	e := engine.New(engine.Options{Name: name, Transport: engTr, Partitions: scalePartitions, DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: quietLogger()}).
		Register(orders.Messages()...).
		Register(orders.Inventory(), orders.Payments(), orders.WorkflowWithTimeout(fastRetry, longTimeout))
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	runEngine(t, e)

	step := consumerTimeout * 5 / 2
	partStore, err := embedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = partStore.Close() })
	var (
		mu      sync.Mutex
		shipped = map[string]int{}
	)
	ship := participant.New(partTr, shippingRegistry(t), orders.ShippingService,
		participant.WithDeduper(participant.NewStoreDeduper(partStore)), participant.WithLogger(quietLogger()))
	participant.Handle(ship, func(ctx context.Context, c *orders.ShipOrder, _ participant.Meta) (*orders.OrderShipped, error) {
		select {
		case <-time.After(step): // the carrier takes its time
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		mu.Lock()
		shipped[c.OrderID]++
		mu.Unlock()
		return &orders.OrderShipped{OrderID: c.OrderID, TrackingNo: "trk-" + c.OrderID}, nil
	})
	if err := ship.Err(); err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- ship.Run(pctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-runDone:
			if err != nil {
				t.Errorf("participant: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("participant did not stop within 30s")
		}
	})

	// 8 sagas on 4 partitions: some shipments queue behind others, so
	// deliveries also wait unacked in the prefetch while a handler runs.
	b := orderBatch{prefix: "ctimeout", n: 8}
	for i := range b.n {
		in := b.input(i)
		in.Address = "street" // every one ships
		raw, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Start(ctx, engine.StartRequest{Workflow: orders.WorkflowName, Input: raw, ID: b.id(i), CorrelationID: b.id(i)}); err != nil {
			t.Fatalf("start %s: %v", b.id(i), err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for i := range b.n {
		s, err := e.WaitSaga(wctx, b.id(i))
		if err != nil {
			t.Fatalf("saga %s not finished: %v", b.id(i), err)
		}
		if s.Status != workflows.StatusCompleted {
			t.Errorf("saga %s: %s (%s), want completed", s.ID, s.Status, s.Error)
		}
	}
	mu.Lock()
	for i := range b.n {
		if n := shipped[b.id(i)]; n != 1 {
			t.Errorf("order %s shipped %d times, want once", b.id(i), n)
		}
	}
	mu.Unlock()
	for _, c := range []struct {
		who string
		tr  *rabbitmq.Transport
	}{{"engine", engTr}, {"participant", partTr}} {
		t.Logf("%s transport: %d channels closed with an error, %d reconnects", c.who, c.tr.ChannelErrors(), c.tr.Reconnects())
		if n := c.tr.ChannelErrors(); n != 0 {
			t.Errorf("the broker closed %d channels of the %s's transport (a delivery held past the consumer timeout)", n, c.who)
		}
		if n := c.tr.Reconnects(); n != 0 {
			t.Errorf("the %s's transport reconnected %d times", c.who, n)
		}
	}
	if dls, _ := engTr.DeadLetters(ctx, 10); len(dls) != 0 {
		t.Errorf("dead letters: %+v", dls)
	}
}
