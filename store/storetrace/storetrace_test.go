package storetrace_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
	"github.com/sagaflow/sagaflow/store/storetest"
	"github.com/sagaflow/sagaflow/store/storetrace"
	"github.com/sagaflow/sagaflow/telemetry"
)

func traced(t *testing.T) (*storetrace.Store, *tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := embedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	in, err := telemetry.NewInstruments(tp, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return storetrace.New(st, in, "bbolt"), rec, tp
}

func commit(stream string, v uint64, handled string) store.Commit {
	return store.Commit{Stream: stream, Version: v, Handled: []string{handled}, At: time.Now(),
		Events: []message.Envelope{{ID: message.NewID(), Kind: message.KindEvent, Type: "t.Happened.v1", Key: "k", Sequence: v, OccurredAt: time.Now(), Payload: []byte(`{}`)}}}
}

func TestSpansOnlyUnderATracedCaller(t *testing.T) {
	st, rec, tp := traced(t)
	if err := st.Append(context.Background(), commit("s/1", 1, "m1")); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d spans from an untraced call (the relay's polling would flood the backend)", n)
	}
	ctx, parent := tp.Tracer("t").Start(context.Background(), "handling")
	if _, err := st.Load(ctx, "s/1", 1); err != nil {
		t.Fatal(err)
	}
	err := st.Append(ctx, commit("s/1", 1, "m2"))
	if !errors.Is(err, store.ErrConcurrency) {
		t.Fatalf("second append at v1: %v, want ErrConcurrency", err)
	}
	if err := st.Append(ctx, commit("s/1", 2, "m1")); !errors.Is(err, store.ErrAlreadyHandled) {
		t.Fatalf("append of a handled message: %v, want ErrAlreadyHandled", err)
	}
	parent.End()
	spans := rec.Ended()
	if len(spans) != 4 {
		t.Fatalf("%d spans, want Load, Append, Append and the parent", len(spans))
	}
	for i, want := range []struct {
		name string
		code codes.Code
	}{{"store.Load", codes.Unset}, {"store.Append", codes.Error}, {"store.Append", codes.Unset}} {
		s := spans[i]
		if s.Name() != want.name || s.Status().Code != want.code || s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %d: %s status %v parent %v; want %s status %v under the caller", i, s.Name(), s.Status().Code, s.Parent().SpanID(), want.name, want.code)
		}
	}
	found := false
	for _, a := range spans[0].Attributes() {
		if a.Key == "sagaflow.stream" && a.Value.AsString() == "s/1" {
			found = true
		}
	}
	if !found {
		t.Errorf("Load span lacks sagaflow.stream=s/1: %v", spans[0].Attributes())
	}
}

// The decorator must keep every promise of the store it wraps.
func TestDecoratedStorePassesTheConformanceSuite(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	in, err := telemetry.NewInstruments(tp, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	open := func(t *testing.T, dir string) store.Store {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := embedded.Open(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return storetrace.New(st, in, "bbolt")
	}
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, t.TempDir()) }, storetest.Features{
		Reopen: func(t *testing.T, old store.Store) store.Store {
			inner := old.(*storetrace.Store).Unwrap().(*embedded.Store)
			if err := inner.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, inner.Dir())
		},
		DetectsGaps:   true,
		TimePrecision: 1,
	})
}
