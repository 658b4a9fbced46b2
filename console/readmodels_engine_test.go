package console_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/console"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/customers"
	"github.com/sagaflow/sagaflow/internal/enginetest"
)

// get serves one GET of c and returns its status and body.
func get(t *testing.T, c http.Handler, target string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
	body, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Code, string(body)
}

// A real embedded engine with the customers projections: the console
// lists them, and a customer registered after the page was loaded shows
// up in the rows the page refreshes (live).
func TestReadModelPagesOnARealEngine(t *testing.T) {
	e := customers.Setup(engine.New(engine.Options{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	enginetest.Run(t, e)
	c := console.New(e)

	code, body := get(t, c, "/console/readmodels")
	for _, want := range []string{`<a href="/console/readmodels/customers">customers</a>`, `<a href="/console/readmodels/customers.byClass">customers.byClass</a>`} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("read-models page: status %d, lacks %s:\n%s", code, want, body)
		}
	}
	code, body = get(t, c, "/console/readmodels/customers")
	if code != http.StatusOK || !strings.Contains(body, `data-refresh="/console/readmodels/customers/rows"`) || !strings.Contains(body, "No documents in this read model yet.") {
		t.Fatalf("empty model page: status %d:\n%s", code, body)
	}

	rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer rcancel()
	res, err := e.Execute(rctx, customers.Service, "c-7", &customers.Register{Name: "Ada <Lovelace>", Email: "ada@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.WaitForReadModel(rctx, customers.ByID, res.Stream, res.Sequence, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	code, rows := get(t, c, "/console/readmodels/customers/rows")
	if code != http.StatusOK || !strings.Contains(rows, `<td class="mono">c-7</td>`) || !strings.Contains(rows, `Ada &lt;Lovelace&gt;`) || strings.Contains(rows, "<html") {
		t.Errorf("rows after the registration: status %d, want c-7 with its escaped name and no layout:\n%s", code, rows)
	}
	if code, body := get(t, c, "/console/readmodels/nope"); code != http.StatusNotFound {
		t.Errorf("unknown model: status %d, want 404:\n%s", code, body)
	}
}
