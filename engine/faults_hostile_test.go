package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/workflows"
)

// Issue 11 items 14 (security) and 17 (deeply nested JSON and a payload
// far over the limit) at the admin API. The message package's own test
// (TestHostileInputIsRefusedBeforeItIsParsed) covers envelope and payload
// decoding.

// hostileBody is a request body of n bytes that is never held in memory:
// prefix, then fill repeated.
type hostileBody struct {
	prefix []byte
	fill   byte
	left   int64
}

func newHostileBody(prefix string, fill byte, n int64) *hostileBody {
	return &hostileBody{prefix: []byte(prefix), fill: fill, left: n}
}

func (b *hostileBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && b.left > 0 {
		if len(b.prefix) > 0 {
			p[n] = b.prefix[0]
			b.prefix = b.prefix[1:]
		} else {
			p[n] = b.fill
		}
		n++
		b.left--
	}
	return n, nil
}

// allocatedBy returns the bytes f allocates (the whole process's
// allocations while it runs; the engine the caller uses is not running,
// so nothing else allocates much meanwhile).
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestAdminRefusesHugeAndDeepBodiesBeforeParsingThem(t *testing.T) {
	// Not run: the handler answers a bad body before it asks the engine
	// anything, and an idle process makes the allocation count the
	// handler's own.
	e := orders.Register(engine.New(engine.Options{DataDir: t.TempDir(), AdminAddr: engine.AdminOff, Logger: quietLogger()}), fastRetry)
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	h := e.AdminHandler()
	const (
		size  = 50 << 20  // the hostile body
		depth = 1_000_000 // levels of '['
		small = 64 << 10  // bytes a refusal may allocate when it reads little
	)
	start := `{"workflow":"` + orders.WorkflowName + `","input":`
	cases := []struct {
		name, path string
		body       func() *hostileBody
		declared   bool // Content-Length sent
		status     int
		words      []string
		budget     uint64
	}{
		{"50 MiB declared", "/v1/sagas", func() *hostileBody { return newHostileBody(start+`"`, 'x', size) }, true,
			413, []string{"too large", "52428800 bytes, limit 1048576"}, small},
		// Without a length the limit has to be read: what is allocated is
		// bounded by the limit, not by the body.
		{"50 MiB chunked", "/v1/sagas", func() *hostileBody { return newHostileBody(start+`"`, 'x', size) }, false,
			413, []string{"too large", "over 1048576 bytes"}, 8 * engine.MaxRequestBody},
		{"1e6 deep start", "/v1/sagas", func() *hostileBody { return newHostileBody(start, '[', depth) }, true,
			400, []string{"nested too deeply", "more than 65 levels"}, small},
		{"1e6 deep start chunked", "/v1/sagas", func() *hostileBody { return newHostileBody(start, '[', depth) }, false,
			400, []string{"nested too deeply", "more than 65 levels"}, small},
		{"1e6 deep signal", "/v1/sagas/s-1/signal", func() *hostileBody { return newHostileBody(`{"name":"x","payload":`, '[', depth) }, false,
			400, []string{"nested too deeply", "more than 65 levels"}, small},
		{"1e6 deep replay", "/v1/dead-letters/replay", func() *hostileBody { return newHostileBody(`{"ids":`, '[', depth) }, false,
			400, []string{"nested too deeply", "more than 65 levels"}, small},
		{"1e6 deep cancel", "/v1/sagas/s-1/cancel", func() *hostileBody { return newHostileBody(`{"reason":`, '[', depth) }, false,
			400, []string{"nested too deeply", "more than 65 levels"}, small},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var rec *httptest.ResponseRecorder
			n := allocatedBy(func() {
				body := c.body()
				req := httptest.NewRequest(http.MethodPost, c.path, body)
				req.ContentLength = -1
				if c.declared {
					req.ContentLength = body.left
				}
				req.Header.Set("Content-Type", "application/json")
				rec = httptest.NewRecorder()
				h.ServeHTTP(rec, req)
			})
			var apiErr engine.APIError
			if err := json.Unmarshal(rec.Body.Bytes(), &apiErr); err != nil {
				t.Fatalf("answer %d %q is not an APIError: %v", rec.Code, rec.Body, err)
			}
			if rec.Code != c.status {
				t.Errorf("status %d (%s), want %d", rec.Code, apiErr.Error, c.status)
			}
			for _, w := range c.words {
				if !strings.Contains(apiErr.Error, w) {
					t.Errorf("error %q does not say %q", apiErr.Error, w)
				}
			}
			if n > c.budget {
				t.Errorf("the refusal allocated %d bytes for a body of %d, want at most %d", n, c.body().left, c.budget)
			}
		})
	}
}

// TestAdminSecurity is issue 11 item 14 over HTTP: beyond loopback the
// engine does not start without a token; with one, a request without it,
// with another scheme or with a wrong token gets 401 and changes nothing;
// with it, an oversized body gets 413 and a deeply nested one 400 with
// the reason. (TestAdminBeyondLoopbackNeedsAToken and
// TestHandleAdminMountsBehindTheToken check the address rule's cases and
// the token on mounted handlers; daemon's TestLoad the flag's error.)
func TestAdminSecurity(t *testing.T) {
	open := engine.New(engine.Options{DataDir: t.TempDir(), AdminAddr: "0.0.0.0:0", Logger: quietLogger()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := open.Run(ctx); err == nil || !strings.Contains(err.Error(), "beyond loopback") {
		t.Fatalf("Run on 0.0.0.0 without a token = %v, want a refusal naming the address", err)
	}
	if open.AdminURL() != "" {
		t.Errorf("refused engine listens at %s", open.AdminURL())
	}

	e := newOrdersEngine(t, engine.Options{AdminToken: "s3cret"})
	raw, _ := json.Marshal(orders.Input{OrderID: "o-sec", SKU: "x", Qty: 1, Amount: 1, Address: "a"})
	start := `{"workflow":"` + orders.WorkflowName + `","id":"o-sec","input":` + string(raw) + `}`
	for _, c := range []struct {
		name, auth, body string
		status           int
		mention          string
	}{
		{"no token", "", start, 401, "missing bearer token"},
		{"other scheme", "Basic czNjcmV0", start, 401, "missing bearer token"},
		{"wrong token", "Bearer s3cre", start, 401, "does not match"},
		{"empty token", "Bearer ", start, 401, "missing bearer token"}, // the header value is trimmed to "Bearer"
		{"oversized", "Bearer s3cret", `{"workflow":"` + strings.Repeat("w", engine.MaxRequestBody) + `"}`, 413, "too large"},
		{"deeply nested", "Bearer s3cret", `{"workflow":"w","input":` + strings.Repeat("[", 100_000) + `}`, 400, "more than 65 levels"},
	} {
		req, err := http.NewRequest(http.MethodPost, e.AdminURL()+"/v1/sagas", bytes.NewBufferString(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var apiErr engine.APIError
		derr := json.NewDecoder(resp.Body).Decode(&apiErr)
		resp.Body.Close()
		if resp.StatusCode != c.status || derr != nil || !strings.Contains(apiErr.Error, c.mention) {
			t.Errorf("%s: %d %q (%v), want %d mentioning %q", c.name, resp.StatusCode, apiErr.Error, derr, c.status, c.mention)
		}
	}
	if _, err := e.GetSaga(context.Background(), "o-sec"); !errors.Is(err, engine.ErrSagaNotFound) {
		t.Errorf("a refused start created saga o-sec: %v", err)
	}
	if st, body := call(t, e, "POST", "/v1/sagas", start, map[string]string{"Authorization": "Bearer s3cret"}, nil); st != 201 {
		t.Errorf("start with the token = %d %s, want 201", st, body)
	}
}

// deepWorkflow takes any JSON tree as input and keeps it as its state, so
// its stored transitions nest the input a few levels deeper than the
// admin body that carried it.
func deepWorkflow() workflows.Workflow {
	type tree struct {
		Tree any `json:"tree"`
	}
	return workflows.New("deep.Tree", 1, func(in tree) (tree, error) { return in, nil }).
		Do("look", workflows.LocalStep[tree]{Run: func(context.Context, *tree) error { return nil }})
}

// TestInputAtTheDepthLimitRunsAndLoads: an input the admin API accepts,
// nested as deep as allowed, is started, runs and is read back: the depth
// limit of outside input must never refuse what the engine stores around
// it (a saga's transition holds its input and state a few levels down).
func TestInputAtTheDepthLimitRunsAndLoads(t *testing.T) {
	e := engine.New(engine.Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: quietLogger()}).Register(deepWorkflow())
	runEngine(t, e)
	// The body is one level, the input object a second, its tree the rest.
	tree := strings.Repeat("[", message.MaxDepth-1) + strings.Repeat("]", message.MaxDepth-1)
	body := `{"workflow":"deep.Tree","id":"deep-1","input":{"tree":` + tree + `}}`
	if st, msg := call(t, e, "POST", "/v1/sagas", body, nil, nil); st != 201 {
		t.Fatalf("start with input at the depth limit = %d %s, want 201", st, msg)
	}
	if s := waitSaga(t, e, "deep-1"); s.Status != workflows.StatusCompleted {
		t.Fatalf("status %s (%s), want completed", s.Status, s.Error)
	}
	deeper := `{"workflow":"deep.Tree","id":"deep-2","input":{"tree":[` + tree + `]}}`
	if st, msg := call(t, e, "POST", "/v1/sagas", deeper, nil, nil); st != 400 || !strings.Contains(msg, "more than 65 levels") {
		t.Errorf("one level deeper = %d %s, want 400 naming the limit", st, msg)
	}
}
