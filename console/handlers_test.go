package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/projection"
	"github.com/sagaflow/sagaflow/readmodel"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/workflows"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// at is t0 plus ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// compensatedHistory is the history of an order whose carrier stays down:
// shipping is tried three times, then the payment and the stock are undone.
var compensatedHistory = []workflows.Record{
	{Event: workflows.EventStarted, At: at(0)},
	{Event: workflows.EventStepStarted, Step: "reserve-stock", Attempt: 1, Detail: "m1", At: at(5)},
	{Event: workflows.EventStepSucceeded, Step: "reserve-stock", Attempt: 1, At: at(10)},
	{Event: workflows.EventStepStarted, Step: "charge-payment", Attempt: 1, Detail: "m2", At: at(10)},
	{Event: workflows.EventStepSucceeded, Step: "charge-payment", Attempt: 1, At: at(15)},
	{Event: workflows.EventStepStarted, Step: "ship-order", Attempt: 1, Detail: "m3", At: at(15)},
	{Event: workflows.EventStepRetryScheduled, Step: "ship-order", Attempt: 1, Detail: "carrier unavailable; next attempt in 200ms", At: at(20)},
	{Event: workflows.EventStepStarted, Step: "ship-order", Attempt: 2, Detail: "m4", At: at(220)},
	{Event: workflows.EventStepRetryScheduled, Step: "ship-order", Attempt: 2, Detail: "carrier unavailable; next attempt in 400ms", At: at(230)},
	{Event: workflows.EventStepStarted, Step: "ship-order", Attempt: 3, Detail: "m5", At: at(630)},
	{Event: workflows.EventStepFailed, Step: "ship-order", Attempt: 3, Detail: "carrier unavailable", At: at(640)},
	{Event: workflows.EventCompensationStarted, Step: "charge-payment", Attempt: 1, Detail: "m6", At: at(640)},
	{Event: workflows.EventCompensationSucceeded, Step: "charge-payment", Attempt: 1, At: at(660)},
	{Event: workflows.EventCompensationStarted, Step: "reserve-stock", Attempt: 1, Detail: "m7", At: at(660)},
	{Event: workflows.EventCompensationSucceeded, Step: "reserve-stock", Attempt: 1, At: at(680)},
	{Event: workflows.EventCompensated, Detail: `step "ship-order" failed: carrier unavailable`, At: at(680)},
}

// fakeEngine is a backend holding sagas and dead letters in memory; it
// records the requests it gets.
type fakeEngine struct {
	mu          sync.Mutex
	sagas       map[string]engine.Saga
	lists       []engine.ListRequest
	next        string
	listErr     error
	letters     []transport.DeadLetter
	deadFilters []engine.DeadLetterFilter
	replayed    []string
	projections []projection.Status
	projErr     error
	models      map[string][]readmodel.Doc // by model, sorted by key
	docLists    []docList
}

func (f *fakeEngine) ListSagas(_ context.Context, req engine.ListRequest) ([]engine.SagaSummary, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists = append(f.lists, req)
	if f.listErr != nil {
		return nil, "", f.listErr
	}
	var out []engine.SagaSummary
	for _, s := range f.sagas {
		if len(req.Status) > 0 && !slices.Contains(req.Status, s.Status) {
			continue
		}
		out = append(out, engine.SagaSummary{ID: s.ID, Workflow: s.Workflow, Status: s.Status, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt})
	}
	slices.SortFunc(out, func(a, b engine.SagaSummary) int { return strings.Compare(a.ID, b.ID) })
	return out, f.next, nil
}

func (f *fakeEngine) GetSaga(_ context.Context, id string) (engine.Saga, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sagas[id]
	if !ok {
		return engine.Saga{}, fmt.Errorf("%w: %s", engine.ErrSagaNotFound, id)
	}
	return s, nil
}

func (f *fakeEngine) Workflows() []workflows.Workflow {
	return []workflows.Workflow{orders.Workflow(orders.DefaultShippingRetry)}
}

func (f *fakeEngine) DeadLetters(_ context.Context, filter engine.DeadLetterFilter) ([]transport.DeadLetter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deadFilters = append(f.deadFilters, filter)
	var out []transport.DeadLetter
	for _, dl := range f.letters {
		if (filter.Queue == "" || dl.Queue == filter.Queue) && (filter.Type == "" || dl.Message.Type == filter.Type) && len(out) < filter.Limit {
			out = append(out, dl)
		}
	}
	return out, nil
}

func (f *fakeEngine) ReplayDeadLetters(_ context.Context, ids []string) (engine.DeadLetterResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var res engine.DeadLetterResult
	f.letters = slices.DeleteFunc(f.letters, func(dl transport.DeadLetter) bool {
		if slices.Contains(ids, dl.Message.ID) {
			res.Done = append(res.Done, dl.Message.ID)
			return true
		}
		return false
	})
	for _, id := range ids {
		if !slices.Contains(res.Done, id) {
			res.Missing = append(res.Missing, id)
		}
	}
	f.replayed = append(f.replayed, res.Done...)
	return res, nil
}

func newFake() *fakeEngine {
	return &fakeEngine{sagas: map[string]engine.Saga{
		"o-1": {ID: "o-1", Workflow: orders.WorkflowName, Version: 1, Status: workflows.StatusCompensated,
			CorrelationID: "cart-1", Error: `step "ship-order" failed: carrier unavailable`,
			Input: []byte(`{"order_id":"o-1"}`), CreatedAt: at(0), UpdatedAt: at(680), History: compensatedHistory},
		"o-2": {ID: "o-2", Workflow: orders.WorkflowName, Version: 1, Status: workflows.StatusRunning, Step: "charge-payment",
			CreatedAt: at(0), UpdatedAt: at(10), History: compensatedHistory[:4]},
	}}
}

// serve runs one request against c and returns the response and its body.
func serve(t *testing.T, c http.Handler, method, target string, header http.Header) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, req)
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}

func testConsole(b backend, opts ...Option) *Console {
	opts = append([]Option{
		WithClock(func() time.Time { return at(1000) }),
		WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	}, opts...)
	return newConsole(b, opts...)
}

func TestListPassesItsFiltersToTheEngine(t *testing.T) {
	cases := []struct {
		query string
		want  engine.ListRequest
	}{
		{"", engine.ListRequest{Limit: 50}},
		{"status=running", engine.ListRequest{Status: []workflows.Status{"running"}, Limit: 50}},
		{"status=running,compensated&status=cancelled&status=running", engine.ListRequest{Status: []workflows.Status{"running", "compensated", "cancelled"}, Limit: 50}},
		{"workflow=orders.PlaceOrder&limit=20&after=o-1", engine.ListRequest{Workflow: "orders.PlaceOrder", Limit: 20, After: "o-1"}},
		{"correlation_id=+cart-7+&since=1h", engine.ListRequest{CorrelationID: "cart-7", CreatedFrom: at(1000).Add(-time.Hour), Limit: 50}},
	}
	for _, path := range []string{"/console/", "/console/sagas"} {
		for _, c := range cases {
			t.Run(path+"?"+c.query, func(t *testing.T) {
				f := newFake()
				res, body := serve(t, testConsole(f), "GET", path+"?"+c.query, nil)
				if res.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200: %s", res.StatusCode, body)
				}
				if len(f.lists) != 1 || !reflect.DeepEqual(f.lists[0], c.want) {
					t.Errorf("engine got %+v, want one request %+v", f.lists, c.want)
				}
			})
		}
	}
}

func TestListRendersSagasAndFilters(t *testing.T) {
	f := newFake()
	f.next = "o-2"
	res, body := serve(t, testConsole(f), "GET", "/console/?status=compensated&status=running", nil)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("status %d, content type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`<a href="/console/sagas/o-1">o-1</a>`,
		`<span class="badge status-compensated">compensated</span>`,
		`<span class="badge status-running">running</span>`,
		`value="compensated" checked`,
		`value="running" checked`,
		`value="completed">`,
		`<option value="orders.PlaceOrder">orders.PlaceOrder</option>`,
		// the live refresh keeps the filter
		`data-refresh="/console/sagas?status=compensated&amp;status=running"`,
		// the next page keeps the filter and adds the cursor
		`href="/console/?after=o-2&amp;status=compensated&amp;status=running"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("list page lacks %s", want)
		}
	}

	// The rows alone, for the live refresh: no layout around them.
	_, rows := serve(t, testConsole(f), "GET", "/console/sagas?status=running", nil)
	if strings.Contains(rows, "<html") || !strings.Contains(rows, `<table class="grid sagas">`) || strings.Contains(rows, "o-1") || !strings.Contains(rows, "o-2") {
		t.Errorf("rows partial: want the table of running sagas only, without the layout:\n%s", rows)
	}

	// A later page is not refreshed: rows would move under the reader.
	_, later := serve(t, testConsole(f), "GET", "/console/?after=o-1", nil)
	if strings.Contains(later, `data-refresh="`) {
		t.Errorf("a page after a cursor should not refresh itself")
	}
}

func TestListAnswers4xxForBadFilters(t *testing.T) {
	for _, c := range []struct{ query, want string }{
		{"status=sleeping", `status &#34;sleeping&#34;: want one of running, compensating, needs_attention, completed, compensated, cancelled`},
		{"limit=0", `limit &#34;0&#34;: want a whole number from 1 to 1000`},
		{"limit=many", `limit &#34;many&#34;`},
		{"since=yesterday", `since &#34;yesterday&#34;: want a positive duration`},
	} {
		t.Run(c.query, func(t *testing.T) {
			res, body := serve(t, testConsole(newFake()), "GET", "/console/?"+c.query, nil)
			if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, c.want) {
				t.Errorf("status %d, want 400 with %q in:\n%s", res.StatusCode, c.want, body)
			}
		})
	}
}

func TestEngineErrorsBecomeStatusCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{engine.ErrNotRunning, http.StatusServiceUnavailable},
		{fmt.Errorf("list: %w", engine.ErrInvalidRequest), http.StatusBadRequest},
		{errors.New("disk on fire"), http.StatusInternalServerError},
	} {
		f := newFake()
		f.listErr = c.err
		res, body := serve(t, testConsole(f), "GET", "/console/", nil)
		if res.StatusCode != c.want || !strings.Contains(body, c.err.Error()) {
			t.Errorf("engine error %v: status %d, want %d with the error in the page", c.err, res.StatusCode, c.want)
		}
	}
}

func TestIDBoxGoesToTheSaga(t *testing.T) {
	res, _ := serve(t, testConsole(newFake()), "GET", "/console/?id=+o%2F1+", nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/console/sagas/o%2F1" {
		t.Errorf("status %d to %q, want 303 to /console/sagas/o%%2F1", res.StatusCode, res.Header.Get("Location"))
	}
}

func TestUnknownSagaIs404(t *testing.T) {
	for _, path := range []string{"/console/sagas/o-404", "/console/sagas/o-404/live"} {
		res, body := serve(t, testConsole(newFake()), "GET", path, nil)
		if res.StatusCode != http.StatusNotFound || !strings.Contains(body, "saga not found: o-404") {
			t.Errorf("%s: status %d, want 404 saying the saga is not found:\n%s", path, res.StatusCode, body)
		}
	}
	res, body := serve(t, testConsole(newFake()), "GET", "/console/nothing/here", nil)
	if res.StatusCode != http.StatusNotFound || !strings.Contains(body, "no console page at /console/nothing/here") {
		t.Errorf("unknown page: status %d:\n%s", res.StatusCode, body)
	}
}

func TestSagaPageRendersTimelineAndDiagram(t *testing.T) {
	res, body := serve(t, testConsole(newFake()), "GET", "/console/sagas/o-1", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d:\n%s", res.StatusCode, body)
	}
	for _, want := range []string{
		`<span class="badge big status-compensated" id="saga-status">compensated</span>`,
		`data-refresh="/console/sagas/o-1/live" data-final="true"`,
		`<strong>Reason:</strong> step &#34;ship-order&#34; failed: carrier unavailable`,
		`<span class="v">7 <span class="muted">(2 retries)</span></span>`,
		`cart-1`,
		// three shipping attempts, two retried, one failed
		`class="bar step outcome-retry"`,
		`class="bar step outcome-failed"`,
		// the compensations, in their own rows
		`<div class="tl-row compensation">`,
		`class="bar compensation outcome-succeeded"`,
		`undo charge-payment`,
		`class="wait"`,
		// the diagram with the progress drawn on it
		`<pre class="diagram-src" hidden>flowchart TD`,
		`class c2 comp`,
		`class compensated current`,
		`class s3 failed`,
		`<script src="/console/static/mermaid.min.js" defer></script>`,
		`&#34;order_id&#34;: &#34;o-1&#34;`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("saga page lacks %s", want)
		}
	}

	// The live part of a running saga: no layout, refreshed until final.
	_, live := serve(t, testConsole(newFake()), "GET", "/console/sagas/o-2/live", nil)
	if strings.Contains(live, "<html") || strings.Contains(live, `data-final`) || !strings.Contains(live, `class s2 current`) || !strings.Contains(live, `class="bar step outcome-running"`) {
		t.Errorf("live part of a running saga: want no layout, not final, charge-payment current and running:\n%s", live)
	}
}

func TestBasePath(t *testing.T) {
	c := testConsole(newFake(), WithBasePath("ops/"))
	res, body := serve(t, c, "GET", "/ops/", nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `href="/ops/sagas/o-1"`) || !strings.Contains(body, `href="/ops/static/console.css"`) {
		t.Errorf("status %d; links should start with /ops:\n%s", res.StatusCode, body)
	}
	res, _ = serve(t, c, "GET", "/ops", nil)
	if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/ops/" {
		t.Errorf("/ops: status %d to %q, want a redirect to /ops/", res.StatusCode, res.Header.Get("Location"))
	}
}

func TestStaticFiles(t *testing.T) {
	for _, c := range []struct{ path, ctype, contains string }{
		{"/console/static/console.css", "text/css", ".bar.compensation"},
		{"/console/static/console.js", "text/javascript", "data-refresh"},
		{"/console/static/mermaid.min.js", "text/javascript", "mermaid"},
	} {
		res, body := serve(t, testConsole(newFake()), "GET", c.path, nil)
		if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), c.ctype) || !strings.Contains(body, c.contains) {
			t.Errorf("%s: status %d, type %q", c.path, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
}

func TestDeadLettersListAndReplay(t *testing.T) {
	f := newFake()
	f.letters = []transport.DeadLetter{
		{Message: message.Envelope{ID: "m-old", Type: "nobody.Nothing.v1", Key: "k1", Payload: []byte(`{"qty":"lots"}`)}, Queue: "inventory", Reason: "unknown message type", Attempts: 1, At: at(100)},
		{Message: message.Envelope{ID: "m-new", Type: "sagaflow.SagaResume.v1", Key: "o-1", SagaID: "o-1"}, Queue: "sagaflow", Reason: "handler panicked: boom", Attempts: 5, At: at(200)},
	}
	c := testConsole(f)
	res, body := serve(t, c, "GET", "/console/deadletters", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d:\n%s", res.StatusCode, body)
	}
	for _, want := range []string{"2 messages", "nobody.Nothing.v1", "unknown message type", "handler panicked: boom",
		`<a href="/console/sagas/o-1">o-1</a>`, `action="/console/deadletters/m-old/replay"`,
		"<summary>payload</summary><pre class=\"json\">{\n  &#34;qty&#34;: &#34;lots&#34;\n}</pre>"} {
		if !strings.Contains(body, want) {
			t.Errorf("dead-letter page lacks %s", want)
		}
	}
	if strings.Index(body, "m-new") < strings.Index(body, "m-old") {
		t.Errorf("dead letters should be listed oldest first, as they queued up")
	}

	// The filter reaches the engine and is kept by the replay form.
	_, body = serve(t, c, "GET", "/console/deadletters?queue=inventory&type=+nobody.Nothing.v1", nil)
	if got := f.deadFilters[len(f.deadFilters)-1]; got != (engine.DeadLetterFilter{Queue: "inventory", Type: "nobody.Nothing.v1", Limit: deadLetterLimit}) {
		t.Errorf("engine got filter %+v", got)
	}
	if strings.Contains(body, "m-new") || !strings.Contains(body, `<input type="hidden" name="queue" value="inventory">`) {
		t.Errorf("filtered page: want only m-old, with the filter in its replay form:\n%s", body)
	}

	// Another site cannot make the operator's browser replay.
	res, _ = serve(t, c, "POST", "/console/deadletters/m-old/replay", http.Header{"Sec-Fetch-Site": {"cross-site"}})
	if res.StatusCode != http.StatusForbidden || len(f.replayed) != 0 {
		t.Fatalf("cross-site replay: status %d, replayed %v; want 403 and nothing replayed", res.StatusCode, f.replayed)
	}

	res, _ = serve(t, c, "POST", "/console/deadletters/m-old/replay", http.Header{"Sec-Fetch-Site": {"same-origin"}})
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/console/deadletters?replayed=m-old" || !slices.Equal(f.replayed, []string{"m-old"}) {
		t.Fatalf("replay: status %d to %q, replayed %v", res.StatusCode, res.Header.Get("Location"), f.replayed)
	}
	_, body = serve(t, c, "GET", "/console/deadletters?replayed=m-old", nil)
	if !strings.Contains(body, `Replayed <span class="mono">m-old</span>`) || strings.Contains(body, "nobody.Nothing.v1") {
		t.Errorf("after the replay the page should say so and no longer list the letter:\n%s", body)
	}

	req := httptest.NewRequest("POST", "/console/deadletters/m-old/replay", strings.NewReader("queue=inventory"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, req)
	if loc, _ := url.Parse(rec.Header().Get("Location")); rec.Code != http.StatusSeeOther || loc.Query().Get("gone") != "m-old" || loc.Query().Get("queue") != "inventory" {
		t.Errorf("second replay: status %d to %q, want a redirect saying it is gone, keeping the filter", rec.Code, rec.Header().Get("Location"))
	}
}
