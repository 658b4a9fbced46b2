package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
	"github.com/sagaflow/sagaflow/store/storetrace"
	"github.com/sagaflow/sagaflow/telemetry"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/transport/transporttrace"
	"github.com/sagaflow/sagaflow/workflows"
)

// traced wraps the engine's store and transport in the tracing decorators
// (store/storetrace, transport/transporttrace).
func (e *Engine) traced(st store.Store, tr transport.Transport) (*storetrace.Store, *transporttrace.Transport) {
	return storetrace.New(st, e.tel, storeSystem(st)), transporttrace.New(tr, e.tel, transporttrace.WithSystem(messagingSystem(e.opts.Transport)))
}

// storeSystem names the database behind st for db.system.name.
func storeSystem(st store.Store) string {
	switch st.(type) {
	case *embedded.Store:
		return "pebble"
	}
	if s, ok := st.(interface{ DBSystem() string }); ok {
		return s.DBSystem()
	}
	return "mongodb"
}

// messagingSystem names the transport for messaging.system: what it says
// (rabbitmq.Transport says "rabbitmq"), "sagaflow.inmem" for the default.
func messagingSystem(tr transport.Transport) string {
	if tr == nil {
		return "sagaflow.inmem"
	}
	if _, ok := tr.(*inmem.Transport); ok {
		return "sagaflow.inmem"
	}
	if s, ok := tr.(interface{ MessagingSystem() string }); ok {
		return s.MessagingSystem()
	}
	return "sagaflow"
}

// observe registers the engine's observable metrics: sagas in flight (a
// bounded count over the store's saga list), outbox lag, mailbox depth
// and transport reconnects.
func (e *Engine) observe(st store.Store, tr *transporttrace.Transport, raw transport.Transport) (func() error, error) {
	obs := telemetry.Observers{
		SagasInFlight: func(ctx context.Context) (int64, error) { return countUnfinished(ctx, st) },
		OutboxLag: func(ctx context.Context) (time.Duration, error) {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			now := e.opts.Now()
			pending, err := st.PendingOutbox(ctx, now, 1)
			if err != nil || len(pending) == 0 {
				return 0, err
			}
			return max(now.Sub(pending[0].At), 0), nil
		},
		MailboxDepth: tr.MailboxDepth,
	}
	if r, ok := raw.(interface{ Reconnects() uint64 }); ok {
		obs.Reconnects = r.Reconnects
	}
	return e.tel.Observe(obs)
}

// countUnfinished counts running and compensating sagas, up to 10,000 (a
// gauge, read at every metrics collection, must stay cheap).
func countUnfinished(ctx context.Context, st store.Store) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var n int64
	after := ""
	for range 20 {
		page, err := st.List(ctx, store.ListFilter{
			Kind: "saga", Status: []string{string(workflows.StatusRunning), string(workflows.StatusCompensating)},
			After: after, Limit: 500,
		})
		if err != nil {
			return 0, fmt.Errorf("count sagas in flight: %w", err)
		}
		n += int64(len(page))
		if len(page) < 500 {
			break
		}
		after = page[len(page)-1].Stream
	}
	return n, nil
}
