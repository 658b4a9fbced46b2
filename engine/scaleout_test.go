package engine_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/testenv"

	"github.com/sagaflow/sagaflow/client"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
	"github.com/sagaflow/sagaflow/workflows"
)

// scalePartitions is the daemons' partition count. Every partition is a
// quorum queue, and a broker limited to 1,024 file descriptors (as on the
// project's machines) stops accepting connections at a few hundred, which
// a few interrupted runs (their cleanup never ran) would otherwise reach.
const scalePartitions = 4

// buildDaemon builds testdata/scaledaemon (the sagaflow daemon with the
// order saga; see its doc) without the race detector, so that three of
// them are as fast as the daemons users run.
func buildDaemon(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sagaflow")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./testdata/scaledaemon")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the daemon: %v\n%s", err, out)
	}
	return bin
}

// daemonProcess is one `sagaflow serve` process and its admin API.
type daemonProcess struct {
	cmd *exec.Cmd
	url string
}

// adminLine is what serve prints once the engine is ready.
var adminLine = regexp.MustCompile(`admin API at (http://\S+)`)

// startDaemon runs `bin serve args...` and waits (at most a minute) until
// it prints its admin URL. Its stderr goes to the test's, so that a
// failing node's last words are seen.
func startDaemon(t *testing.T, bin, node string, args ...string) *daemonProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", node, err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := adminLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case urls <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case u := <-urls:
		return &daemonProcess{cmd: cmd, url: u}
	case <-time.After(time.Minute):
		t.Fatalf("%s: no admin URL printed within a minute", node)
		return nil
	}
}

// withDatabase returns the MongoDB URI u with its path set to database db
// (serve's --mongo-uri names the database by the path).
func withDatabase(t *testing.T, u, db string) string {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatalf("MongoDB URI: %v", err)
	}
	parsed.Path = "/" + db
	// Three engines with the driver's default pool (100 connections each)
	// swamp the dev server; a real deployment sizes the pool too.
	q := parsed.Query()
	if q.Get("maxPoolSize") == "" {
		q.Set("maxPoolSize", "16")
	}
	parsed.RawQuery = q.Encode()
	return parsed.String()
}

// deleteTopology deletes what the daemons named name declared on the
// broker at u for the queues.
func deleteTopology(t *testing.T, u, name string, queues ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := rabbitmq.Dial(ctx, u, rabbitmq.WithName(name), rabbitmq.WithPartitions(scalePartitions), rabbitmq.WithLogger(quietLogger()))
	if err != nil {
		t.Logf("cleanup: dial RabbitMQ: %v", err)
		return
	}
	defer tr.Close()
	if err := tr.DeleteTopology(ctx, queues...); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// TestScaleOutSurvivesSIGKILLOfOneOfThreeEngines runs three engine
// processes on one RabbitMQ and one MongoDB, starts 1,000 sagas over their
// three admin APIs and kills one engine with SIGKILL half way. Every saga
// must still finish with its expected status, and each participant must
// have applied exactly the expected events, in order (no effect twice, no
// effect lost, per-key order kept).
func TestScaleOutSurvivesSIGKILLOfOneOfThreeEngines(t *testing.T) {
	// 1,000 sagas, as the issue asks; SAGAFLOW_SCALEOUT_SAGAS changes the
	// number. The clients keep a bounded number in flight (see below),
	// because the FerretDB dev server's updates and deletes read whole
	// collections and slow down to store timeouts under an open-ended load.
	sagas := 1000
	if n, err := strconv.Atoi(os.Getenv("SAGAFLOW_SCALEOUT_SAGAS")); err == nil && n > 0 {
		sagas = n
	}
	if testing.Short() {
		sagas = 60
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
		deleteTopology(t, amqpU, name, name, orders.InventoryService, orders.PaymentService, orders.ShippingService)
	})
	bin := buildDaemon(t)

	const (
		nodes  = 3
		victim = 1
	)
	killAfter := sagas / 2
	children := make([]*daemonProcess, nodes)
	clients := make([]*client.Client, nodes)
	for i := range nodes {
		children[i] = startDaemon(t, bin, fmt.Sprintf("node%d", i),
			"--name", name,
			"--amqp-url", amqpU,
			"--mongo-uri", withDatabase(t, mongoU, ts.mongoDB),
			"--admin-addr", "127.0.0.1:0",
			"--partitions", strconv.Itoa(scalePartitions),
			"--log-level", "warn",
		)
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
	// inFlight clients each start a saga and wait for it to finish before
	// they start the next (a closed loop), so that the store sees a bounded
	// load however slow it is: saga i goes first to node i%3; a start that
	// fails (the node was killed) is retried on the next node with the
	// same saga ID (the idempotency key).
	inFlight := 16
	if n, err := strconv.Atoi(os.Getenv("SAGAFLOW_SCALEOUT_INFLIGHT")); err == nil && n > 0 {
		inFlight = n
	}
	began := time.Now()
	work := make(chan int, sagas)
	for i := range sagas {
		work <- i
	}
	close(work)
	var wg sync.WaitGroup
	errs := make(chan error, sagas)
	live := func(try int) *client.Client {
		for {
			node := try % nodes
			if node != victim || !killed.Load() {
				return clients[node]
			}
			try++
		}
	}
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				// Transient failures (the killed node, a store that is
				// slow to answer) are retried for up to two minutes.
				var err error
				giveUp := time.Now().Add(2 * time.Minute)
				for try := 0; ; try++ {
					sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					_, err = live(i+try).Start(sctx, input(i))
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
				if err := waitFinished(ctx, live, id(i), 5*time.Minute); err != nil {
					errs <- err
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
	survivors := []*client.Client{clients[0], clients[2]}
	const wait = 10 * time.Minute
	killedAt := time.Now()
	deadline := killedAt.Add(wait)
	var (
		polls   int
		lastLog time.Time
	)
	for {
		c := survivors[polls%2]
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
		s, err := survivors[i%2].Get(ctx, id(i))
		for try := 0; err != nil && try < 10; try++ {
			time.Sleep(time.Second)
			s, err = survivors[(i+try+1)%2].Get(ctx, id(i))
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

// waitFinished polls saga id on a live node (live(try) picks one) until it
// is terminal or needs attention, for at most limit. Errors of single
// polls (a node that was just killed, a slow store) are retried.
func waitFinished(ctx context.Context, live func(try int) *client.Client, id string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var (
		last    engine.Saga
		lastErr error
	)
	for try := 0; time.Now().Before(deadline); try++ {
		gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		s, err := live(try).Get(gctx, id)
		cancel()
		if err == nil && (s.Status.Terminal() || s.Status == workflows.StatusNeedsAttention) {
			return nil
		}
		last, lastErr = s, err
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("saga %s not finished within %v: last status %q, last error %v", id, limit, last.Status, lastErr)
}
