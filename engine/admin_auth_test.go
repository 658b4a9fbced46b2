package engine_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
)

// get sends GET url with an optional bearer token and returns the status
// and body.
func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHandleAdminMountsBehindTheToken(t *testing.T) {
	e := orders.Register(engine.New(engine.Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", AdminToken: "s3cret", Logger: quietLogger()}), fastRetry)
	e.HandleAdmin("GET /console/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "console "+r.URL.Path)
	}))
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	runEngine(t, e)
	base := e.AdminURL()

	cases := []struct {
		path, token string
		status      int
		body        string
	}{
		{"/console/x", "s3cret", 200, "console /console/x"},
		{"/console/x", "", 401, "missing bearer token"},
		{"/console/x", "wrong", 401, "does not match"},
		{"/v1/sagas", "", 401, "missing bearer token"},
		{"/v1/sagas", "s3cret", 200, `"sagas"`},
		{"/healthz", "", 200, "ok"},
		{"/readyz", "", 200, "ready"},
	}
	for _, c := range cases {
		status, body := get(t, base+c.path, c.token)
		if status != c.status || !strings.Contains(body, c.body) {
			t.Errorf("GET %s (token %q) = %d %q, want %d containing %q", c.path, c.token, status, body, c.status, c.body)
		}
	}
}

func TestHandleAdminRejectsBadPatterns(t *testing.T) {
	cases := []struct {
		pattern string
		mention string
	}{
		{"GET /v1/sagas", "GET /v1/sagas"},  // the API's own route
		{"BAD PATTERN HERE", "BAD PATTERN"}, // malformed
	}
	for _, c := range cases {
		e := engine.New(engine.Options{DataDir: t.TempDir(), AdminAddr: engine.AdminOff})
		e.HandleAdmin(c.pattern, http.NotFoundHandler())
		if err := e.Err(); err == nil || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("HandleAdmin(%q): Err() = %v, want an error naming it", c.pattern, err)
		}
	}
}

func TestAdminBeyondLoopbackNeedsAToken(t *testing.T) {
	cases := []struct {
		addr, token string
		ok          bool
	}{
		{"127.0.0.1:0", "", true},
		{"[::1]:0", "", true},
		{"localhost:0", "", true},
		{engine.AdminOff, "", true},
		{"0.0.0.0:0", "", false},
		{":8080", "", false},
		{"0.0.0.0:0", "t", true},
		{"nonsense", "", false},
	}
	for _, c := range cases {
		err := engine.New(engine.Options{DataDir: t.TempDir(), AdminAddr: c.addr, AdminToken: c.token}).Err()
		if (err == nil) != c.ok {
			t.Errorf("addr %q token %q: Err() = %v, want ok=%v", c.addr, c.token, err, c.ok)
		}
		if !c.ok && err != nil && !strings.Contains(err.Error(), "admin address") {
			t.Errorf("addr %q: error %q does not name the admin address", c.addr, err)
		}
	}
}
