package engine_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
)

// adminRoutes are the admin API's routes the fuzzer calls; {id} is
// replaced by the fuzzed path segment.
var adminRoutes = []struct{ method, path string }{
	{"POST", "/v1/sagas"},
	{"GET", "/v1/sagas"},
	{"GET", "/v1/sagas/{id}"},
	{"POST", "/v1/sagas/{id}/cancel"},
	{"GET", "/v1/sagas/{id}/history"},
	{"POST", "/v1/sagas/{id}/signal"},
	{"POST", "/v1/sagas/{id}/retry"},
	{"GET", "/v1/dead-letters"},
	{"GET", "/v1/dead-letters/{id}"},
	{"POST", "/v1/dead-letters/replay"},
	{"POST", "/v1/dead-letters/discard"},
	{"POST", "/v1/dead-letters/{id}/replay"},
	{"POST", "/v1/dead-letters/{id}/discard"},
	{"GET", "/v1/workflows"},
	{"GET", "/v1/workflows/{id}"},
}

// FuzzAdminHandlers (issue 11 item 13) sends arbitrary requests (route,
// path segment, query string and body) to the admin API of a running
// order engine: no handler panics, none answers with a server error, and
// every refusal is a JSON APIError that says what was wrong. (Request
// bodies alone are fuzzed by FuzzDecodeBody.)
func FuzzAdminHandlers(f *testing.F) {
	f.Add(uint8(0), "", "", []byte(`{"workflow":"orders.PlaceOrder","input":{"order_id":"f-1","sku":"x","qty":1,"amount":1,"address":"a"}}`))
	f.Add(uint8(0), "", "", []byte(`{"workflow":"orders.PlaceOrder","input":{"qty":"many"}}`))
	f.Add(uint8(1), "", "status=running&limit=5&type=orders.PlaceOrder", []byte(nil))
	f.Add(uint8(1), "", "created_after=yesterday&limit=-1", []byte(nil))
	f.Add(uint8(2), "f-1", "", []byte(nil))
	f.Add(uint8(3), "f-1", "", []byte(`{"reason":"test"}`))
	f.Add(uint8(5), "f-1", "", []byte(`{"name":"go","payload":{"a":1}}`))
	f.Add(uint8(6), "%00", "", []byte(`{"reason":""}`))
	f.Add(uint8(7), "", "limit=0&queue=inventory", []byte(nil))
	f.Add(uint8(9), "", "", []byte(`{"ids":["a","b"]}`))
	f.Add(uint8(14), orders.WorkflowName, "", []byte(nil))

	e := engine.New(engine.Options{DataDir: f.TempDir(), AdminAddr: engine.AdminOff, Logger: quietLogger()})
	orders.Register(e, fastRetry)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	f.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
		}
	})
	select {
	case err := <-done:
		f.Fatalf("engine: %v", err)
	case <-e.Ready():
	}
	h := e.AdminHandler()

	f.Fuzz(func(t *testing.T, route uint8, id, query string, body []byte) {
		r := adminRoutes[int(route)%len(adminRoutes)]
		path := strings.ReplaceAll(r.path, "{id}", url.PathEscape(id))
		req := httptest.NewRequest(r.method, "http://admin"+path, strings.NewReader(string(body)))
		req.URL.RawQuery = query // as a server takes it from the request line, unchecked
		if len(body) > 0 {
			req.Header.Set("Content-Type", "application/json")
		}
		rec := httptest.NewRecorder()
		served := make(chan struct{})
		go func() { defer close(served); h.ServeHTTP(rec, req) }()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s %s?%s with %q: no answer within 10s", r.method, path, query, body)
		}
		if rec.Code >= 500 {
			t.Fatalf("%s %s?%s with %q: %d %s", r.method, path, query, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var apiErr engine.APIError
			if err := json.Unmarshal(rec.Body.Bytes(), &apiErr); err != nil || apiErr.Error == "" {
				t.Fatalf("%s %s?%s: %d with a body that is not an APIError with words: %q", r.method, path, query, rec.Code, rec.Body)
			}
		}
	})
}
