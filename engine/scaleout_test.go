package engine_test

import (
	"github.com/sagaflow/sagaflow/internal/testenv"

	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/client"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
	"github.com/sagaflow/sagaflow/workflows"
)

// envScaleAMQPName makes a crash child (runCrashChild) run on RabbitMQ, at
// SAGAFLOW_AMQP_URL, with this transport name. Its queues are named after
// it too (see prefixedTransport), so that runs and other users of the
// broker do not share queues.
const envScaleAMQPName = "SAGAFLOW_TEST_SCALE_AMQP_NAME"

// dialScaleTransport is the RabbitMQ transport of a scale-out child.
func dialScaleTransport(ctx context.Context, name string) (transport.Transport, error) {
	u := os.Getenv("SAGAFLOW_AMQP_URL")
	if u == "" {
		u = testenv.DefaultAMQPURL
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	tr, err := rabbitmq.Dial(dctx, u, rabbitmq.WithName(name), rabbitmq.WithLogger(quietLogger()))
	if err != nil {
		return nil, err
	}
	return &prefixedTransport{Transport: tr, prefix: name + "-"}, nil
}

// prefixedTransport puts prefix in front of every queue name on the wire.
// rabbitmq.WithName names only the exchanges and the dead-letter queue;
// the partition queues are named after the destinations ("inventory.3"),
// and queues of the same name declared by another run (with another
// dead-letter exchange) would make Declare fail or be shared.
type prefixedTransport struct {
	transport.Transport
	prefix string
}

func (p *prefixedTransport) Declare(ctx context.Context, q transport.Queue) error {
	q.Name = p.prefix + q.Name
	return p.Transport.Declare(ctx, q)
}

func (p *prefixedTransport) Publish(ctx context.Context, e message.Envelope) error {
	if e.Destination != "" {
		e.Destination = p.prefix + e.Destination
	}
	return p.Transport.Publish(ctx, e)
}

func (p *prefixedTransport) Consume(ctx context.Context, queue string, prefetch int, h transport.Handler) error {
	return p.Transport.Consume(ctx, p.prefix+queue, prefetch, func(ctx context.Context, d transport.Delivery) {
		h(ctx, prefixedDelivery{Delivery: d, prefix: p.prefix})
	})
}

type prefixedDelivery struct {
	transport.Delivery
	prefix string
}

func (d prefixedDelivery) Envelope() message.Envelope {
	e := d.Delivery.Envelope()
	if len(e.Destination) > len(d.prefix) && e.Destination[:len(d.prefix)] == d.prefix {
		e.Destination = e.Destination[len(d.prefix):]
	}
	return e
}

// deleteTopology deletes the queues and exchanges the children declared
// with transport name name (see transport/rabbitmq/topology.go).
func deleteTopology(t *testing.T, u, name string, queues []string) {
	conn, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Logf("cleanup: dial RabbitMQ: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Logf("cleanup: channel: %v", err)
		return
	}
	names := []string{name + ".dead-letters"}
	for _, q := range queues {
		for p := range transport.DefaultPartitions {
			names = append(names, name+"-"+q+"."+strconv.Itoa(p))
		}
	}
	for _, n := range names {
		if _, err := ch.QueueDelete(n, false, false, false); err != nil {
			t.Logf("cleanup: delete queue %s: %v", n, err)
			if ch, err = conn.Channel(); err != nil {
				return
			}
		}
	}
	for _, ex := range []string{".direct", ".events", ".dlx"} {
		if err := ch.ExchangeDelete(name+ex, false, false); err != nil {
			t.Logf("cleanup: delete exchange %s: %v", name+ex, err)
			if ch, err = conn.Channel(); err != nil {
				return
			}
		}
	}
}

// TestScaleOutSurvivesSIGKILLOfOneOfThreeEngines runs three engine
// processes on one RabbitMQ and one MongoDB, starts 1,000 sagas over their
// three admin APIs and kills one engine with SIGKILL half way. Every saga
// must still finish with its expected status, and each participant must
// have applied exactly the expected events, in order (no effect twice, no
// effect lost, per-key order kept).
func TestScaleOutSurvivesSIGKILLOfOneOfThreeEngines(t *testing.T) {
	// The issue asks for 1,000 sagas; the FerretDB dev server cannot carry
	// three engines at that load on 2 cores, so by default (and in CI) the
	// test runs 150, which it finishes in about 60s under -race.
	// SAGAFLOW_SCALEOUT=1 runs the full 1,000 (against a real MongoDB).
	sagas := 150
	if os.Getenv("SAGAFLOW_SCALEOUT") == "1" {
		sagas = 1000
	}
	if testing.Short() {
		t.Skip("scale-out test: skipped with -short")
	}
	amqpU := testenv.RabbitMQ(t)
	mongoU := testenv.MongoDB(t)
	ts := testStore{kind: "mongo", uri: mongoU, mongoDB: freshDatabase(t, mongoU)}

	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "sagaflow-scaleout-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		deleteTopology(t, amqpU, name, []string{"sagaflow", orders.InventoryService, orders.PaymentService, orders.ShippingService})
	})

	const (
		nodes  = 3
		victim = 1
	)
	killAfter := sagas / 2
	env := []string{"SAGAFLOW_AMQP_URL=" + amqpU, envScaleAMQPName + "=" + name}
	children := make([]*childEngine, nodes)
	clients := make([]*client.Client, nodes)
	for i := range nodes {
		children[i] = startChild(t, ts, fmt.Sprintf("node%d", i), env...)
		clients[i] = client.New(children[i].url)
	}

	ctx := context.Background()
	id := func(i int) string { return fmt.Sprintf("scale-%04d", i) }
	failing := func(i int) bool { return i%5 == 0 }
	input := func(i int) engine.StartRequest {
		in := orders.Input{OrderID: id(i), SKU: "sku", Qty: 1, Amount: 10, Address: "street"}
		if failing(i) {
			in.Address = orders.Unreachable
		}
		raw, _ := json.Marshal(in)
		return engine.StartRequest{Workflow: orders.WorkflowName, Input: raw, ID: in.OrderID}
	}

	var (
		killed   atomic.Bool
		killOnce sync.Once
		acked    atomic.Int64
	)
	kill := func() {
		killOnce.Do(func() {
			if err := children[victim].cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Errorf("kill: %v", err)
			}
			killed.Store(true)
		})
	}
	// 12 clients start the sagas, saga i first on node i%3; a start that
	// fails (the node was killed) is retried on the next node, with the
	// same saga ID (the idempotency key).
	began := time.Now()
	work := make(chan int, sagas)
	for i := range sagas {
		work <- i
	}
	close(work)
	var wg sync.WaitGroup
	errs := make(chan error, sagas)
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				// Transient failures (the killed node, a store that is
				// slow to answer) are retried for up to two minutes.
				var err error
				giveUp := time.Now().Add(2 * time.Minute)
				for try := 0; ; try++ {
					node := (i + try) % nodes
					if node == victim && killed.Load() {
						continue
					}
					sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					_, err = clients[node].Start(sctx, input(i))
					cancel()
					if err == nil || time.Now().After(giveUp) {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if err != nil {
					errs <- fmt.Errorf("start %s: %w", id(i), err)
					continue
				}
				if acked.Add(1) == int64(killAfter) {
					kill()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	kill()
	_ = children[victim].cmd.Wait()
	t.Logf("killed node %d after %d of %d starts had been acknowledged; all started in %v", victim, killAfter, sagas, time.Since(began).Round(time.Millisecond))

	// Wait until the survivors see no running or compensating saga. A crash
	// can leave a MongoDB commit whose derived documents are repaired only
	// once they are 30s old, and three engines load the dev MongoDB server
	// (FerretDB on SQLite) heavily, hence the generous bound; a list that
	// times out is tried again.
	live := []*client.Client{clients[0], clients[2]}
	const wait = 10 * time.Minute
	killedAt := time.Now()
	deadline := killedAt.Add(wait)
	var (
		polls   int
		lastLog time.Time
	)
	for {
		c := live[polls%2]
		polls++
		left, err := c.List(ctx, engine.ListRequest{Status: []workflows.Status{workflows.StatusRunning, workflows.StatusCompensating}, Limit: 1000})
		if err == nil && len(left.Sagas) == 0 {
			break
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("sagas not seen finished %v after the kill; last list: %v", wait, err)
			}
			stuck, _ := c.Get(ctx, left.Sagas[0].ID)
			t.Fatalf("%d sagas still unfinished %v after the kill, e.g. %s: %s, step %q, history %+v", len(left.Sagas), wait, stuck.ID, stuck.Status, stuck.Step, stuck.History)
		}
		if time.Since(lastLog) > 30*time.Second {
			lastLog = time.Now()
			t.Logf("%v after the kill: %d unfinished (list error: %v)", time.Since(killedAt).Round(time.Second), len(left.Sagas), err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("all %d sagas finished %v after the start", sagas, time.Since(began).Round(time.Millisecond))

	for i := range sagas {
		s, err := live[i%2].Get(ctx, id(i))
		for try := 0; err != nil && try < 10; try++ {
			time.Sleep(time.Second)
			s, err = live[(i+try+1)%2].Get(ctx, id(i))
		}
		if err != nil {
			t.Fatalf("get %s: %v", id(i), err)
		}
		want := workflows.StatusCompleted
		if failing(i) {
			want = workflows.StatusCompensated
		}
		if s.Status != want {
			t.Errorf("saga %s: status %s (%s), want %s", id(i), s.Status, s.Error, want)
		}
	}
	// Let late duplicates (redeliveries, relay and timer re-sends) reach the
	// participants before their streams are checked.
	time.Sleep(3 * time.Second)
	for _, n := range []int{0, 2} {
		if err := children[n].cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []int{0, 2} {
		if err := children[n].cmd.Wait(); err != nil {
			t.Errorf("child engine %d exit after SIGTERM: %v", n, err)
		}
	}

	st := ts.open(t)
	for i := range sagas {
		want := completedEffects
		if failing(i) {
			want = shippingFailedEffects
		}
		checkEffects(t, st, id(i), want)
	}
}
