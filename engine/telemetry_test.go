package engine_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/telemetry"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
	"github.com/sagaflow/sagaflow/workflows"
)

// tracedEngine is one engine with its own in-memory span recorder (as if
// it ran in its own process) and metric reader.
type tracedEngine struct {
	e      *engine.Engine
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
}

func newTracedEngine(t *testing.T, opts engine.Options, register func(*engine.Engine) *engine.Engine) *tracedEngine {
	t.Helper()
	te := &tracedEngine{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(te.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(te.reader))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
	opts.TracerProvider, opts.MeterProvider = tp, mp
	if opts.DataDir == "" && opts.Store == nil {
		opts.DataDir = t.TempDir()
	}
	if opts.AdminAddr == "" {
		opts.AdminAddr = engine.AdminOff
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	te.e = register(engine.New(opts))
	if err := te.e.Err(); err != nil {
		t.Fatalf("register: %v", err)
	}
	runEngine(t, te.e)
	return te
}

func registerWorkflowOnly(e *engine.Engine) *engine.Engine {
	return e.Register(orders.Messages()...).Register(orders.Workflow(fastRetry))
}

func registerParticipantsOnly(e *engine.Engine) *engine.Engine {
	return e.Register(orders.Messages()...).Register(orders.Inventory(), orders.Payments(), orders.Shipping())
}

func randomSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// dialShared dials a RabbitMQ transport named name; the two engines of a
// test use the same name, so they share exchanges and queues, as two
// processes of one deployment do. The first one dialled deletes the
// topology when the test ends.
func dialShared(t *testing.T, url, name string, cleanup bool, queues ...string) *rabbitmq.Transport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr, err := rabbitmq.Dial(ctx, url, rabbitmq.WithName(name), rabbitmq.WithLogger(quietLogger()))
	if err != nil {
		t.Fatalf("dial RabbitMQ: %v", err)
	}
	t.Cleanup(func() {
		if cleanup {
			dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
			if err := tr.DeleteTopology(dctx, queues...); err != nil {
				t.Logf("delete topology: %v", err)
			}
			dcancel()
		}
		_ = tr.Close()
	})
	return tr
}

// spanIndex finds recorded spans by name and by span ID.
type spanIndex struct {
	all  []sdktrace.ReadOnlySpan
	byID map[trace.SpanID]sdktrace.ReadOnlySpan
}

func indexSpans(recs ...*tracetest.SpanRecorder) spanIndex {
	ix := spanIndex{byID: make(map[trace.SpanID]sdktrace.ReadOnlySpan)}
	for _, r := range recs {
		for _, s := range r.Ended() {
			ix.all = append(ix.all, s)
			ix.byID[s.SpanContext().SpanID()] = s
		}
	}
	return ix
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}

// named returns the spans called name whose attribute key has value val
// (any when key is "").
func (ix spanIndex) named(name, key, val string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range ix.all {
		if s.Name() == name && (key == "" || attr(s, key) == val) {
			out = append(out, s)
		}
	}
	return out
}

// childrenOf returns the spans named name whose parent is p.
func (ix spanIndex) childrenOf(p sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range ix.all {
		if s.Name() == name && s.Parent().SpanID() == p.SpanContext().SpanID() {
			out = append(out, s)
		}
	}
	return out
}

func one(t *testing.T, what string, spans []sdktrace.ReadOnlySpan) sdktrace.ReadOnlySpan {
	t.Helper()
	if len(spans) != 1 {
		names := make([]string, len(spans))
		for i, s := range spans {
			names[i] = s.Name()
		}
		t.Fatalf("%s: want exactly one span, got %d %v", what, len(spans), names)
	}
	return spans[0]
}

// waitSpans polls until the recorders hold at least want[name] ended
// spans of each name (the last consume spans end just after the final
// commit), then returns the index.
func waitSpans(t *testing.T, want map[string]int, recs ...*tracetest.SpanRecorder) spanIndex {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ix := indexSpans(recs...)
		ok := true
		for name, n := range want {
			if len(ix.named(name, "", "")) < n {
				ok = false
			}
		}
		if ok || time.Now().After(deadline) {
			return ix
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkStepChain checks that step span st (child of root) sent a command
// to service whose handling in the participant engine and whose reply
// back to the saga engine are, in order, children of each other:
// step -> publish service -> process service -> aggregate.handle cmdType
// -> publish sagaQueue -> process sagaQueue.
func checkStepChain(t *testing.T, ix spanIndex, st sdktrace.ReadOnlySpan, service, cmdType, sagaQueue string) {
	t.Helper()
	pub := one(t, st.Name()+": publish", ix.childrenOf(st, "publish "+service))
	if got := attr(pub, "messaging.system"); got != "rabbitmq" {
		t.Errorf("%s: messaging.system %q, want rabbitmq", pub.Name(), got)
	}
	if pub.SpanKind() != trace.SpanKindProducer || attr(pub, "messaging.operation.type") != "send" || attr(pub, "messaging.message.id") == "" {
		t.Errorf("%s: kind %v, attributes %v: want a producer span with messaging attributes", pub.Name(), pub.SpanKind(), pub.Attributes())
	}
	proc := one(t, st.Name()+": process in the participant", ix.childrenOf(pub, "process "+service))
	if proc.SpanKind() != trace.SpanKindConsumer || attr(proc, "messaging.message.id") != attr(pub, "messaging.message.id") {
		t.Errorf("%s: kind %v, message ID %q: want a consumer span of message %q", proc.Name(), proc.SpanKind(), attr(proc, "messaging.message.id"), attr(pub, "messaging.message.id"))
	}
	agg := one(t, st.Name()+": aggregate", ix.childrenOf(proc, "aggregate.handle "+cmdType))
	if len(ix.childrenOf(agg, "store.Append")) == 0 {
		t.Errorf("%s: no store.Append span under it", agg.Name())
	}
	reply := one(t, st.Name()+": reply publish", ix.childrenOf(agg, "publish "+sagaQueue))
	one(t, st.Name()+": reply consume", ix.childrenOf(reply, "process "+sagaQueue))
}

// TestTracingOverRabbitMQ runs the order saga on one engine and its three
// participants on another, both on RabbitMQ with separate tracer
// providers (as two processes), and checks the trace each saga makes and
// the metrics the saga engine counts.
func TestTracingOverRabbitMQ(t *testing.T) {
	url := testenv.RabbitMQ(t)
	suffix := randomSuffix(t)
	name, sagaQueue, partQueue := "otel-"+suffix, "orders-"+suffix, "participants-"+suffix
	queues := []string{sagaQueue, partQueue, orders.InventoryService, orders.PaymentService, orders.ShippingService}
	trA := dialShared(t, url, name, true, queues...)
	trB := dialShared(t, url, name, false)
	sagaEng := newTracedEngine(t, engine.Options{Name: sagaQueue, Transport: trA}, registerWorkflowOnly)
	partEng := newTracedEngine(t, engine.Options{Name: partQueue, Transport: trB}, registerParticipantsOnly)
	recs := []*tracetest.SpanRecorder{sagaEng.spans, partEng.spans}

	t.Run("a 3-step saga is one trace with the expected tree", func(t *testing.T) {
		id := startOrder(t, sagaEng.e, orders.Input{OrderID: "t-ok-" + suffix, SKU: "book", Qty: 1, Amount: 30, Address: "1 Main St"})
		if s := waitSaga(t, sagaEng.e, id); s.Status != workflows.StatusCompleted {
			t.Fatalf("saga %s: %s, want completed", id, s.Status)
		}
		ix := waitSpans(t, map[string]int{ // 3 replies (the first command goes with the saga's first commit, no resume); 3 commands
			"process " + sagaQueue: 3, "process " + orders.InventoryService: 1, "process " + orders.PaymentService: 1, "process " + orders.ShippingService: 1,
		}, recs...)
		if os.Getenv("SAGAFLOW_TEST_PRINT_TRACE") != "" {
			printTree(t, ix)
		}
		root := one(t, "root", ix.named("saga.start "+orders.WorkflowName, "saga.id", id))
		if root.Parent().IsValid() {
			t.Errorf("root span has a parent %v", root.Parent().SpanID())
		}
		traceID := root.SpanContext().TraceID()
		for _, s := range ix.all {
			if s.SpanContext().TraceID() != traceID {
				t.Errorf("span %q (saga.id %q) is in trace %s, want the saga's trace %s", s.Name(), attr(s, "saga.id"), s.SpanContext().TraceID(), traceID)
			}
		}
		steps := []struct{ step, service, cmd string }{
			{"reserve-stock", orders.InventoryService, "inventory.ReserveStock.v1"},
			{"charge-payment", orders.PaymentService, "payments.ChargePayment.v1"},
			{"ship-order", orders.ShippingService, "shipping.ShipOrder.v1"},
		}
		for _, s := range steps {
			st := one(t, s.step, ix.childrenOf(root, "saga.step "+s.step))
			if st.Status().Code == codes.Error || attr(st, "saga.outcome") != "succeeded" {
				t.Errorf("%s: status %v outcome %q, want succeeded", st.Name(), st.Status(), attr(st, "saga.outcome"))
			}
			checkStepChain(t, ix, st, s.service, s.cmd, sagaQueue)
		}
		if n := len(ix.named("saga.compensate reserve-stock", "", "")); n != 0 {
			t.Errorf("%d compensation spans in a saga that completed", n)
		}
	})

	t.Run("a compensated saga shows its compensation spans", func(t *testing.T) {
		for _, r := range recs {
			r.Reset()
		}
		id := startOrder(t, sagaEng.e, orders.Input{OrderID: "t-comp-" + suffix, SKU: "book", Qty: 1, Amount: orders.MaxAmount + 1, Address: "1 Main St"})
		if s := waitSaga(t, sagaEng.e, id); s.Status != workflows.StatusCompensated {
			t.Fatalf("saga %s: %s, want compensated", id, s.Status)
		}
		ix := waitSpans(t, map[string]int{ // 2 replies + compensation reply; 3 commands
			"process " + sagaQueue: 3, "process " + orders.InventoryService: 2, "process " + orders.PaymentService: 1,
		}, recs...)
		root := one(t, "root", ix.named("saga.start "+orders.WorkflowName, "saga.id", id))
		for _, s := range ix.all {
			if s.SpanContext().TraceID() != root.SpanContext().TraceID() {
				t.Errorf("span %q is outside the saga's trace", s.Name())
			}
		}
		charge := one(t, "charge-payment", ix.childrenOf(root, "saga.step charge-payment"))
		if charge.Status().Code != codes.Error || !strings.Contains(charge.Status().Description, "declined") {
			t.Errorf("charge-payment span status %v, want an error saying declined", charge.Status())
		}
		agg := one(t, "payments aggregate", ix.named("aggregate.handle payments.ChargePayment.v1", "", ""))
		if agg.Status().Code != codes.Error {
			t.Errorf("the participant's span of the rejected command has status %v, want error", agg.Status())
		}
		comp := one(t, "compensation", ix.childrenOf(root, "saga.compensate reserve-stock"))
		if attr(comp, "saga.outcome") != "succeeded" {
			t.Errorf("compensation outcome %q, want succeeded", attr(comp, "saga.outcome"))
		}
		checkStepChain(t, ix, comp, orders.InventoryService, "inventory.ReleaseStock.v1", sagaQueue)
		if n := len(ix.named("saga.step ship-order", "", "")); n != 0 {
			t.Errorf("ship-order ran (%d spans) after the payment was declined", n)
		}
	})

	t.Run("metrics count what happened", func(t *testing.T) {
		var rm metricdata.ResourceMetrics
		if err := sagaEng.reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		wf := attribute.String("saga.type", orders.WorkflowName)
		for name, want := range map[string]int64{
			telemetry.MetricSagasStarted: 2, telemetry.MetricSagasCompleted: 1, telemetry.MetricSagasCompensated: 1,
			telemetry.MetricSagasFailed: 1, telemetry.MetricSagasParked: 0, telemetry.MetricSagasCancelled: 0,
		} {
			if got := sumInt(rm, name, wf); got != want {
				t.Errorf("%s{saga.type=%s} = %d, want %d", name, orders.WorkflowName, got, want)
			}
		}
		for _, c := range []struct {
			phase, outcome string
			want           uint64
		}{{"forward", "succeeded", 4}, {"forward", "failed", 1}, {"compensation", "succeeded", 1}, {"forward", "retry", 0}} {
			if got := histCount(rm, telemetry.MetricStepDuration, attribute.String("saga.phase", c.phase), attribute.String("saga.outcome", c.outcome)); got != c.want {
				t.Errorf("%s{phase=%s,outcome=%s} count = %d, want %d", telemetry.MetricStepDuration, c.phase, c.outcome, got, c.want)
			}
		}
		if got, ok := gaugeInt(rm, telemetry.MetricSagasInFlight); !ok || got != 0 {
			t.Errorf("%s = %d (reported %v), want 0 once both sagas ended", telemetry.MetricSagasInFlight, got, ok)
		}
		if got := sumInt(rm, telemetry.MetricDeadLetters); got != 0 {
			t.Errorf("%s = %d, want 0", telemetry.MetricDeadLetters, got)
		}
		if _, ok := gaugeInt(rm, telemetry.MetricMailboxDepth); !ok {
			t.Errorf("%s not reported", telemetry.MetricMailboxDepth)
		}
		if _, ok := findMetric(rm, telemetry.MetricOutboxLag); !ok {
			t.Errorf("%s not reported", telemetry.MetricOutboxLag)
		}
		if got := sumInt(rm, telemetry.MetricTransportReconnects); got != 0 {
			t.Errorf("%s = %d, want 0 (no connection was lost)", telemetry.MetricTransportReconnects, got)
		}
		if _, ok := findMetric(rm, telemetry.MetricTransportReconnects); !ok {
			t.Errorf("%s not reported for the RabbitMQ transport", telemetry.MetricTransportReconnects)
		}
	})
}

func findMetric(rm metricdata.ResourceMetrics, name string) (metricdata.Metrics, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

func hasAll(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// sumInt adds the points of an int64 sum whose attributes include want.
func sumInt(rm metricdata.ResourceMetrics, name string, want ...attribute.KeyValue) int64 {
	m, ok := findMetric(rm, name)
	if !ok {
		return 0
	}
	var n int64
	if s, ok := m.Data.(metricdata.Sum[int64]); ok {
		for _, p := range s.DataPoints {
			if hasAll(p.Attributes, want) {
				n += p.Value
			}
		}
	}
	return n
}

func histCount(rm metricdata.ResourceMetrics, name string, want ...attribute.KeyValue) uint64 {
	m, ok := findMetric(rm, name)
	if !ok {
		return 0
	}
	var n uint64
	if h, ok := m.Data.(metricdata.Histogram[float64]); ok {
		for _, p := range h.DataPoints {
			if hasAll(p.Attributes, want) {
				n += p.Count
			}
		}
	}
	return n
}

func gaugeInt(rm metricdata.ResourceMetrics, name string) (int64, bool) {
	m, ok := findMetric(rm, name)
	if !ok {
		return 0, false
	}
	g, ok := m.Data.(metricdata.Gauge[int64])
	if !ok {
		return 0, false
	}
	var n int64
	for _, p := range g.DataPoints {
		n += p.Value
	}
	return n, true
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(s.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestResumedSagaStaysInItsTrace stops an engine while its saga waits for
// a participant nobody serves, then starts a new engine on the same store
// with the participants: the resumed saga's steps, the participant's
// handling and the replies stay in the trace the saga started in. It also
// checks that lines logged while handling a message carry trace_id,
// span_id and saga_id, and the in-flight, outbox-lag, step-duration and
// dead-letter metrics around the restart.
func TestResumedSagaStaysInItsTrace(t *testing.T) {
	dir := t.TempDir()
	logs := &syncBuffer{}
	first := &tracedEngine{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tp1 := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(first.spans))
	e1 := registerWorkflowOnly(engine.New(engine.Options{
		DataDir: dir, AdminAddr: engine.AdminOff, TracerProvider: tp1,
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(first.reader)),
		Logger:        slog.New(slog.NewJSONHandler(logs, nil)),
	}))
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e1.Run(ctx) }()
	<-e1.Ready()
	id := startOrder(t, e1, orders.Input{OrderID: "t-resume", SKU: "book", Qty: 1, Amount: 30, Address: "1 Main St"})
	// The inventory command cannot be routed (nobody declared the queue):
	// the saga waits, its command pending in the outbox.
	var logged map[string]any
	deadline := time.Now().Add(15 * time.Second)
	for logged == nil && time.Now().Before(deadline) {
		for _, l := range logs.lines() {
			if l["msg"] == "publish failed; the outbox relay will retry" && l["saga_id"] == id {
				logged = l
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	// While it waits: one saga in flight, and its command has been
	// waiting in the outbox since its commit.
	var waiting metricdata.ResourceMetrics
	if err := first.reader.Collect(context.Background(), &waiting); err != nil {
		t.Fatal(err)
	}
	if n, ok := gaugeInt(waiting, telemetry.MetricSagasInFlight); !ok || n != 1 {
		t.Errorf("%s = %d (reported %v) while the saga waits, want 1", telemetry.MetricSagasInFlight, n, ok)
	}
	if m, ok := findMetric(waiting, telemetry.MetricOutboxLag); !ok || len(m.Data.(metricdata.Gauge[float64]).DataPoints) != 1 ||
		m.Data.(metricdata.Gauge[float64]).DataPoints[0].Value <= 0 {
		t.Errorf("%s = %+v, want the age of the unpublished command, above 0", telemetry.MetricOutboxLag, m.Data)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("first engine: %v", err)
	}
	_ = tp1.Shutdown(context.Background())
	root := one(t, "root", indexSpans(first.spans).named("saga.start "+orders.WorkflowName, "saga.id", id))
	traceID := root.SpanContext().TraceID()
	if logged == nil {
		t.Fatalf("no log line about the failed publish of saga %s", id)
	}
	if logged["trace_id"] != traceID.String() || logged["span_id"] == nil || logged["span_id"] == "" {
		t.Errorf("log line %v: want trace_id %s and a span_id", logged, traceID)
	}

	restartAt := time.Now()
	tr2 := inmem.New(inmem.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = tr2.Close() })
	logs2 := &syncBuffer{}
	second := newTracedEngine(t, engine.Options{DataDir: dir, Transport: tr2, Logger: slog.New(slog.NewJSONHandler(logs2, nil))}, func(e *engine.Engine) *engine.Engine {
		return e.Register(orders.Messages()...).Register(orders.Inventory(), orders.Payments(), orders.Shipping(), orders.Workflow(fastRetry))
	})
	if s := waitSaga(t, second.e, id); s.Status != workflows.StatusCompleted {
		t.Fatalf("resumed saga %s: %s, want completed", id, s.Status)
	}
	ix := waitSpans(t, map[string]int{"saga.step ship-order": 1, "aggregate.handle shipping.ShipOrder.v1": 1}, second.spans)
	for _, step := range []string{"reserve-stock", "charge-payment", "ship-order"} {
		st := one(t, step, ix.named("saga.step "+step, "saga.id", id))
		if st.SpanContext().TraceID() != traceID || st.Parent().SpanID() != root.SpanContext().SpanID() {
			t.Errorf("%s after the restart: trace %s parent %s, want trace %s parent %s (the root)", st.Name(),
				st.SpanContext().TraceID(), st.Parent().SpanID(), traceID, root.SpanContext().SpanID())
		}
	}
	// The step that was waiting at the restart: its span and its duration
	// start when it started, before the restart (from the saga's history).
	reserve := one(t, "reserve-stock", ix.named("saga.step reserve-stock", "saga.id", id))
	if !reserve.StartTime().Before(restartAt) || attr(reserve, "sagaflow.step.start_unseen") != "true" {
		t.Errorf("reserve-stock span starts %v (restart at %v), start_unseen %q: want it to start before the restart",
			reserve.StartTime(), restartAt, attr(reserve, "sagaflow.step.start_unseen"))
	}
	var rm metricdata.ResourceMetrics
	if err := second.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"reserve-stock", "charge-payment", "ship-order"} {
		if got := histCount(rm, telemetry.MetricStepDuration, attribute.String("saga.step", step), attribute.String("saga.outcome", "succeeded")); got != 1 {
			t.Errorf("%s{saga.step=%s} count %d after the restart, want 1", telemetry.MetricStepDuration, step, got)
		}
	}
	if got := sumInt(rm, telemetry.MetricSagasCompleted); got != 1 {
		t.Errorf("%s = %d in the engine that finished the saga, want 1", telemetry.MetricSagasCompleted, got)
	}

	// A reply to the finished saga is dead-lettered: counted, and logged
	// with the handling span's IDs and the saga's ID.
	stray := message.Envelope{ID: message.NewID(), Kind: message.KindReply, Type: message.FailureType, Source: "test",
		Destination: "sagaflow", Key: id, SagaID: id, CausationID: message.NewID(), OccurredAt: time.Now(),
		Payload: []byte(`{"reason":"late","retryable":false}`)}
	if err := tr2.Publish(context.Background(), stray); err != nil {
		t.Fatal(err)
	}
	var deadLine map[string]any
	for deadline := time.Now().Add(15 * time.Second); deadLine == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, l := range logs2.lines() {
			if l["msg"] == "dead-lettering message" && l["message_id"] == stray.ID {
				deadLine = l
			}
		}
	}
	if deadLine == nil {
		t.Fatal("the stray reply was not dead-lettered")
	}
	if deadLine["saga_id"] != id || deadLine["trace_id"] == nil || deadLine["span_id"] == nil {
		t.Errorf("dead-letter log line %v: want saga_id %s, trace_id and span_id", deadLine, id)
	}
	rm = metricdata.ResourceMetrics{}
	if err := second.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if got := sumInt(rm, telemetry.MetricDeadLetters, attribute.String("messaging.destination.name", "sagaflow"), attribute.String("sagaflow.message.type", message.FailureType)); got != 1 {
		t.Errorf("%s{sagaflow, %s} = %d, want 1", telemetry.MetricDeadLetters, message.FailureType, got)
	}
	for _, name := range []string{"aggregate.handle inventory.ReserveStock.v1", "aggregate.handle payments.ChargePayment.v1", "aggregate.handle shipping.ShipOrder.v1"} {
		for _, s := range ix.named(name, "", "") {
			if s.SpanContext().TraceID() != traceID {
				t.Errorf("%s in trace %s, want the saga's trace %s", name, s.SpanContext().TraceID(), traceID)
			}
		}
		if len(ix.named(name, "", "")) == 0 {
			t.Errorf("no %s span after the restart", name)
		}
	}
}

// printTree logs the span tree (SAGAFLOW_TEST_PRINT_TRACE=1), for a
// reader checking the shape by eye.
func printTree(t *testing.T, ix spanIndex) {
	var walk func(parent trace.SpanID, depth int)
	walk = func(parent trace.SpanID, depth int) {
		for _, s := range ix.all {
			if s.Parent().SpanID() == parent {
				t.Logf("%s%s [%s] %s", strings.Repeat("  ", depth), s.Name(), s.SpanKind(), s.Status().Code)
				walk(s.SpanContext().SpanID(), depth+1)
			}
		}
	}
	walk(trace.SpanID{}, 0)
}
