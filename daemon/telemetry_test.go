package daemon

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/workflows"
)

// otlpCollector is an OTLP/HTTP trace receiver that keeps the span names
// and service names it was sent.
type otlpCollector struct {
	mu       sync.Mutex
	spans    map[string]int
	services map[string]bool
}

func (c *otlpCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil || r.URL.Path != "/v1/traces" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				c.services[a.GetValue().GetStringValue()] = true
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.spans[s.Name]++
			}
		}
	}
	c.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// TestServeExportsTracesFromOTELVariables runs `sagaflow serve` with the
// OTLP variables pointing at a collector, runs a saga, stops the daemon,
// and checks that the collector received the saga's spans under the
// configured service name: set up from the environment at start, flushed
// on exit.
func TestServeExportsTracesFromOTELVariables(t *testing.T) {
	col := &otlpCollector{spans: map[string]int{}, services: map[string]bool{}}
	srv := httptest.NewServer(col)
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	t.Setenv("OTEL_SERVICE_NAME", "daemon-under-test")
	t.Setenv("OTEL_SDK_DISABLED", "")

	addr := freeAddr(t)
	setup := func(e *engine.Engine) {
		orders.Register(e, workflows.RetryPolicy{MaxAttempts: 2, InitialInterval: 10 * time.Millisecond})
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- MainIO(ctx, []string{"sagaflow", "serve", "--data-dir", t.TempDir(), "--admin-addr", addr, "--log-level", "warn"}, setup, &out, &errOut)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "running") {
		select {
		case code := <-done:
			t.Fatalf("serve exited %d: %s %s", code, out.String(), errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not running: %s %s", out.String(), errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	input := `{"order_id":"o-otel","sku":"book","qty":1,"amount":30,"address":"1 Main St"}`
	if so, _ := runCLI(t, "start", orders.WorkflowName, "--input", input, "--addr", addr); !strings.Contains(so, ": completed") {
		t.Fatalf("start --wait: %s", so)
	}
	stop()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d: %s", code, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30s")
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if !col.services["daemon-under-test"] {
		t.Errorf("service names %v, want daemon-under-test from OTEL_SERVICE_NAME", col.services)
	}
	for _, name := range []string{"saga.start " + orders.WorkflowName, "saga.step reserve-stock", "saga.step charge-payment", "saga.step ship-order",
		"aggregate.handle shipping.ShipOrder.v1", "publish shipping", "process shipping"} {
		if col.spans[name] == 0 {
			t.Errorf("collector has no %q span (got %v)", name, col.spans)
		}
	}
}
