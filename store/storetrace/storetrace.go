package storetrace

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/telemetry"
)

// Store decorates a store.Store with spans. Make one with New.
type Store struct {
	store.Store
	in     *telemetry.Instruments
	system string
}

// New wraps s; system names the database for the db.system.name attribute
// ("mongodb", "pebble"; "" leaves it out). Spans go to in (nil: none).
func New(s store.Store, in *telemetry.Instruments, system string) *Store {
	if in == nil {
		in = telemetry.Noop()
	}
	return &Store{Store: s, in: in, system: system}
}

// Unwrap returns the decorated store.
func (s *Store) Unwrap() store.Store { return s.Store }

var (
	attrStream  = attribute.Key("sagaflow.stream")
	attrVersion = attribute.Key("sagaflow.version")
	attrCount   = attribute.Key("sagaflow.count")
)

// start begins a span for op when ctx is traced; otherwise it returns a
// nil span and ctx.
func (s *Store) start(ctx context.Context, op string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, nil
	}
	attrs = append(attrs, attribute.String("db.operation.name", op))
	if s.system != "" {
		attrs = append(attrs, attribute.String("db.system.name", s.system))
	}
	return s.in.Start(ctx, "store."+op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// end closes span with err. ErrAlreadyHandled and ErrNotFound are answers,
// not failures: they are recorded as an attribute, not as an error.
func end(span trace.Span, err error) {
	if span == nil {
		return
	}
	switch {
	case err == nil:
	case errors.Is(err, store.ErrAlreadyHandled), errors.Is(err, store.ErrNotFound):
		span.SetAttributes(attribute.String("sagaflow.store.result", err.Error()))
	default:
		telemetry.RecordError(span, err)
	}
	span.End()
}

// Append implements store.Store.
func (s *Store) Append(ctx context.Context, c store.Commit) (err error) {
	ctx, span := s.start(ctx, "Append", attrStream.String(c.Stream), attrVersion.Int64(int64(c.Version)),
		attribute.Int("sagaflow.commit.events", len(c.Events)), attribute.Int("sagaflow.commit.outbox", len(c.Outbox)))
	defer func() { end(span, err) }()
	return s.Store.Append(ctx, c)
}

// Load implements store.Store.
func (s *Store) Load(ctx context.Context, stream string, from uint64) (cs []store.Commit, err error) {
	ctx, span := s.start(ctx, "Load", attrStream.String(stream), attribute.Int64("sagaflow.from", int64(from)))
	defer func() {
		if span != nil {
			span.SetAttributes(attrCount.Int(len(cs)))
		}
		end(span, err)
	}()
	return s.Store.Load(ctx, stream, from)
}

// Handled implements store.Store.
func (s *Store) Handled(ctx context.Context, stream, msgID string) (v uint64, ok bool, err error) {
	ctx, span := s.start(ctx, "Handled", attrStream.String(stream), attribute.String("messaging.message.id", msgID))
	defer func() { end(span, err) }()
	return s.Store.Handled(ctx, stream, msgID)
}

// Info implements store.Store.
func (s *Store) Info(ctx context.Context, stream string) (info store.StreamInfo, err error) {
	ctx, span := s.start(ctx, "Info", attrStream.String(stream))
	defer func() { end(span, err) }()
	return s.Store.Info(ctx, stream)
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, f store.ListFilter) (infos []store.StreamInfo, err error) {
	ctx, span := s.start(ctx, "List", attribute.String("sagaflow.kind", f.Kind), attribute.String("sagaflow.type", f.Type))
	defer func() {
		if span != nil {
			span.SetAttributes(attrCount.Int(len(infos)))
		}
		end(span, err)
	}()
	return s.Store.List(ctx, f)
}

// PendingOutbox implements store.Store.
func (s *Store) PendingOutbox(ctx context.Context, olderThan time.Time, limit int) (es []store.OutboxEntry, err error) {
	ctx, span := s.start(ctx, "PendingOutbox")
	defer func() { end(span, err) }()
	return s.Store.PendingOutbox(ctx, olderThan, limit)
}

// MarkDispatched implements store.Store.
func (s *Store) MarkDispatched(ctx context.Context, ids ...string) (err error) {
	ctx, span := s.start(ctx, "MarkDispatched", attrCount.Int(len(ids)))
	defer func() { end(span, err) }()
	return s.Store.MarkDispatched(ctx, ids...)
}

// DueTimers implements store.Store.
func (s *Store) DueTimers(ctx context.Context, now time.Time, limit int) (ts []store.Timer, err error) {
	ctx, span := s.start(ctx, "DueTimers")
	defer func() { end(span, err) }()
	return s.Store.DueTimers(ctx, now, limit)
}

// NextTimer implements store.Store.
func (s *Store) NextTimer(ctx context.Context) (due time.Time, ok bool, err error) {
	ctx, span := s.start(ctx, "NextTimer")
	defer func() { end(span, err) }()
	return s.Store.NextTimer(ctx)
}

// DeleteTimers implements store.Store.
func (s *Store) DeleteTimers(ctx context.Context, ids ...string) (err error) {
	ctx, span := s.start(ctx, "DeleteTimers", attrCount.Int(len(ids)))
	defer func() { end(span, err) }()
	return s.Store.DeleteTimers(ctx, ids...)
}

// SaveSnapshot implements store.Store.
func (s *Store) SaveSnapshot(ctx context.Context, snap store.Snapshot) (err error) {
	ctx, span := s.start(ctx, "SaveSnapshot", attrStream.String(snap.Stream), attrVersion.Int64(int64(snap.Version)))
	defer func() { end(span, err) }()
	return s.Store.SaveSnapshot(ctx, snap)
}

// LoadSnapshot implements store.Store.
func (s *Store) LoadSnapshot(ctx context.Context, stream string) (snap store.Snapshot, ok bool, err error) {
	ctx, span := s.start(ctx, "LoadSnapshot", attrStream.String(stream))
	defer func() { end(span, err) }()
	return s.Store.LoadSnapshot(ctx, stream)
}
