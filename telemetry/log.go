package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// LogHandler wraps a slog.Handler and adds, to every record logged with a
// context, trace_id and span_id of the context's span (when it has a
// valid one) and saga_id (when WithSagaID set one). Records logged
// without a context pass through unchanged.
type LogHandler struct {
	inner slog.Handler
}

// NewLogHandler wraps h. Wrapping a LogHandler again returns it as is.
func NewLogHandler(h slog.Handler) slog.Handler {
	if lh, ok := h.(LogHandler); ok {
		return lh
	}
	return LogHandler{inner: h}
}

// Enabled implements slog.Handler.
func (h LogHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (h LogHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
		}
		if id := SagaID(ctx); id != "" && !hasAttr(r, "saga_id") {
			r.AddAttrs(slog.String("saga_id", id))
		}
	}
	return h.inner.Handle(ctx, r)
}

func hasAttr(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			found = true
			return false
		}
		return true
	})
	return found
}

// WithAttrs implements slog.Handler.
func (h LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return LogHandler{inner: h.inner.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (h LogHandler) WithGroup(name string) slog.Handler {
	return LogHandler{inner: h.inner.WithGroup(name)}
}
