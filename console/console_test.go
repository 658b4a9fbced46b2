package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sagaflow/sagaflow/daemon"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/workflows"
)

// shortRetry makes the shipping step's retries take about a second in
// all: quick, but slow enough for the browser to watch the saga run and
// for the back-off to show on the timeline.
var shortRetry = workflows.RetryPolicy{MaxAttempts: 3, InitialInterval: 300 * time.Millisecond, MaxInterval: time.Second, Multiplier: 2}

// syncBuffer is a bytes.Buffer safe for the daemon's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startDaemon runs `sagaflow serve` in-process, as cmd/sagaflow does, with
// the demo order saga registered, on the embedded store and the
// in-process transport (flags override whatever SAGAFLOW_* the
// environment holds), until the test ends. It returns the daemon's engine.
func startDaemon(t *testing.T) *engine.Engine {
	t.Helper()
	t.Setenv("SAGAFLOW_ADMIN_TOKEN", "") // the browser sends no token
	engines := make(chan *engine.Engine, 1)
	setup := func(e *engine.Engine) {
		orders.Register(e, shortRetry)
		engines <- e
	}
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	args := []string{"sagaflow", "serve", "--config=", "--name=sagaflow", "--mongo-uri=", "--amqp-url=", "--admin-token-file=", "--pprof-addr=",
		"--data-dir", t.TempDir(), "--admin-addr", "127.0.0.1:0", "--partitions", "4", "--log-level", "warn"}
	exited := make(chan struct{})
	var code int
	go func() {
		defer close(exited)
		code = daemon.MainIO(ctx, args, setup, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
			if code != 0 {
				t.Errorf("sagaflow serve exited with %d:\n%s", code, stderr.String())
			}
		case <-time.After(20 * time.Second):
			t.Errorf("sagaflow serve did not stop within 20s")
		}
	})
	var e *engine.Engine
	select {
	case e = <-engines:
	case <-exited:
		t.Fatalf("sagaflow serve stopped before it built its engine")
	}
	select {
	case <-e.Ready():
	case <-exited:
		t.Fatalf("sagaflow serve stopped before it was ready")
	case <-time.After(15 * time.Second):
		t.Fatalf("sagaflow serve not ready within 15s:\n%s", stderr.String())
	}
	return e
}

// startOrder starts an order saga, its ID the order's.
func startOrder(t *testing.T, e *engine.Engine, in orders.Input) string {
	t.Helper()
	input, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.StartSaga(context.Background(), engine.StartRequest{Workflow: orders.WorkflowName, Input: input, ID: in.OrderID, CorrelationID: "cart-" + in.OrderID})
	if err != nil {
		t.Fatalf("start %s: %v", in.OrderID, err)
	}
	return id
}

// runOrder starts an order saga and waits until it is finished.
func runOrder(t *testing.T, e *engine.Engine, in orders.Input) engine.Saga {
	t.Helper()
	id := startOrder(t, e, in)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := e.WaitSaga(ctx, id)
	if err != nil {
		t.Fatalf("wait for %s: %v", id, err)
	}
	return s
}

// screenshotDir is where screenshots go: SAGAFLOW_SCREENSHOT_DIR when set
// (to keep them), else the test's temporary directory.
func screenshotDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("SAGAFLOW_SCREENSHOT_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// browser starts headless Chromium for the test and returns its context.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := testenv.Chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.Headless,
		chromedp.WindowSize(1400, 1000),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("force-device-scale-factor", "1"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	t.Cleanup(func() {
		cancel()
		cancelBrowser()
		cancelAlloc()
	})
	return ctx
}

// run runs one browser action and fails the test on error.
func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return v
}

// TestConsoleShowsACompensatedSaga is the console's acceptance test: the
// daemon runs an order whose carrier stays down, so shipping is retried
// three times and the payment and the stock are compensated. Its page,
// opened in headless Chromium while the saga runs, follows it without a
// reload until it shows the saga as compensated, a timeline with one bar
// per shipping attempt and a compensation bar for each undone step, and
// the workflow diagram drawn by mermaid.js with the end highlighted.
func TestConsoleShowsACompensatedSaga(t *testing.T) {
	ctx := browser(t)
	e := startDaemon(t)
	runOrder(t, e, orders.Input{OrderID: "o-1001", SKU: "book", Qty: 1, Amount: 30, Address: "1 Main St"})
	runOrder(t, e, orders.Input{OrderID: "o-1002", SKU: "lamp", Qty: 1, Amount: 5000, Address: "2 High St"})
	id := startOrder(t, e, orders.Input{OrderID: "o-1003", SKU: "desk", Qty: 2, Amount: 250, Address: orders.Unreachable})
	dir := screenshotDir(t)
	base := e.AdminURL() + "/console"

	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/sagas/"+id),
		chromedp.WaitVisible(chromedp.CSS(`#saga-status`)),
	); err != nil {
		t.Fatalf("open the saga's page: %v", err)
	}
	first := run(t, ctx, chromedp.Text(chromedp.CSS(`#saga-status`)))
	t.Logf("the page opened with the saga %s", first)
	// A reload would drop this mark: the page must follow the saga by itself.
	run(t, ctx, chromedp.Evaluate[chromedp.Void](`window.sameDocument = true`))
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`.live-root[data-final="true"] #timeline .bar.compensation`)),
		chromedp.WaitVisible(chromedp.CSS(`#diagram svg .node.current[id*="-compensated-"]`)),
	); err != nil {
		t.Fatalf("the saga's page did not show the compensation: %v", err)
	}
	if !run(t, ctx, chromedp.Evaluate[bool](`window.sameDocument === true`)) {
		t.Errorf("the page was reloaded; the live refresh should update it in place")
	}
	if s, err := e.GetSaga(context.Background(), id); err != nil || s.Status != workflows.StatusCompensated {
		t.Fatalf("saga %s: status %s (%v), want compensated", id, s.Status, err)
	}
	status := run(t, ctx, chromedp.Text(chromedp.CSS(`#saga-status`)))
	compBars := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#timeline .bar.compensation').length`))
	compLabels := run(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#timeline .tl-row.compensation .tl-label')).map(e => e.textContent.trim())`))
	shipAttempts := run(t, ctx, chromedp.Evaluate[int](`Array.from(document.querySelectorAll('#timeline .tl-row')).find(r => r.querySelector('.tl-label').textContent.trim() === 'ship-order').querySelectorAll('.bar').length`))
	waits := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#timeline .wait').length`))
	diagram := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#diagram svg .node').length`))
	current := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#diagram svg .node.current').length`))
	shot := run(t, ctx, chromedp.FullScreenshot(100))
	path := filepath.Join(dir, "console-saga-compensated.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the compensated saga's page: %s", path)

	if status != "compensated" {
		t.Errorf("status badge says %q, want compensated", status)
	}
	if compBars != 2 || strings.Join(compLabels, ",") != "↩undo charge-payment,↩undo reserve-stock" {
		t.Errorf("timeline: %d compensation bars in rows %q, want 2: undo charge-payment, then undo reserve-stock", compBars, compLabels)
	}
	if shipAttempts != 3 || waits != 2 {
		t.Errorf("timeline: ship-order has %d attempt bars and %d back-offs, want 3 and 2", shipAttempts, waits)
	}
	if diagram < 8 || current != 1 {
		t.Errorf("diagram: %d nodes with %d highlighted, want the 8 nodes of the order saga with its end highlighted", diagram, current)
	}

	// The list shows the three sagas with their status badges.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`table.sagas`)),
	); err != nil {
		t.Fatalf("open the list: %v", err)
	}
	rows := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('table.sagas tbody tr').length`))
	badges := run(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('table.sagas .badge')).map(e => e.textContent)`))
	shot = run(t, ctx, chromedp.FullScreenshot(100))
	path = filepath.Join(dir, "console-sagas.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the sagas list: %s", path)
	if rows != 3 || strings.Join(badges, ",") != "completed,compensated,compensated" {
		t.Errorf("list: %d rows with badges %q, want completed, compensated, compensated", rows, badges)
	}

	// The list refreshes itself: a saga started now appears without a reload.
	runOrder(t, e, orders.Input{OrderID: "o-1004", SKU: "pen", Qty: 3, Amount: 12, Address: "4 Low Rd"})
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`table.sagas a[href$="/sagas/o-1004"]`))); err != nil {
		t.Fatalf("the list did not show a new saga by itself: %v", err)
	}

	// A command for a saga that does not exist is dead-lettered; its
	// Replay button puts it back on the queue (where it fails again, for
	// the same reason: replay is for messages whose cause was fixed).
	bad, err := e.Send(context.Background(), "sagaflow", "o-ghost", &orders.ShipOrder{OrderID: "o-ghost", Address: "nowhere"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/deadletters"),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/deadletters/`+bad.ID+`/replay"] button`)),
	); err != nil {
		t.Fatalf("the dead letter is not listed: %v", err)
	}
	reason := run(t, ctx, chromedp.Text(chromedp.CSS(`table.deadletters td.detail`)))
	shot = run(t, ctx, chromedp.FullScreenshot(100))
	path = filepath.Join(dir, "console-deadletters.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the dead letters: %s", path)
	if !strings.Contains(reason, "shipping.ShipOrder.v1") || !strings.Contains(reason, "o-ghost") {
		t.Errorf("dead letter reason %q should name the message type and the saga", reason)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`form[action$="/deadletters/`+bad.ID+`/replay"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`.alert.ok`)),
	); err != nil {
		t.Fatalf("replay from the console: %v", err)
	}
	if flash := run(t, ctx, chromedp.Text(chromedp.CSS(`.alert.ok`))); !strings.Contains(flash, "Replayed "+bad.ID) {
		t.Errorf("after Replay the page says %q", flash)
	}
}

// TestConsoleOnTheAdminServer reads the pages over the engine's admin
// server, without a browser: the filters reach the engine, an unknown saga
// is a 404, and a compensated saga's page has compensation bars.
func TestConsoleOnTheAdminServer(t *testing.T) {
	e := startDaemon(t)
	runOrder(t, e, orders.Input{OrderID: "o-2001", SKU: "book", Qty: 1, Amount: 30, Address: "1 Main St"})
	runOrder(t, e, orders.Input{OrderID: "o-2002", SKU: "lamp", Qty: 1, Amount: 5000, Address: "2 High St"})
	base := e.AdminURL() + "/console"

	get := func(path string) (int, string) {
		t.Helper()
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, string(body)
	}
	for _, c := range []struct {
		path     string
		status   int
		has, not []string
	}{
		{"/", 200, []string{"o-2001", "o-2002"}, nil},
		{"/?status=completed", 200, []string{"o-2001"}, []string{"o-2002"}},
		{"/sagas?status=compensated&workflow=" + orders.WorkflowName, 200, []string{"o-2002"}, []string{"o-2001", "<html"}},
		{"/?workflow=nobody", 200, []string{"No sagas match these filters."}, []string{"o-2001"}},
		{"/?status=lost", 400, []string{"status &#34;lost&#34;"}, nil},
		{"/sagas/o-2002", 200, []string{`class="bar compensation outcome-succeeded"`, "undo reserve-stock", "payment declined"}, nil},
		{"/sagas/o-404", 404, []string{"saga not found: o-404"}, nil},
		{"/deadletters", 200, []string{"Dead letters"}, nil},
	} {
		status, body := get(c.path)
		if status != c.status {
			t.Errorf("GET %s: status %d, want %d:\n%s", c.path, status, c.status, body)
			continue
		}
		for _, s := range c.has {
			if !strings.Contains(body, s) {
				t.Errorf("GET %s: lacks %q", c.path, s)
			}
		}
		for _, s := range c.not {
			if strings.Contains(body, s) {
				t.Errorf("GET %s: has %q", c.path, s)
			}
		}
	}
}
