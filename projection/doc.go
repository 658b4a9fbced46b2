// Package projection builds read models from events. A Projection names
// its read model and has one typed handler per public event type:
//
//	p := projection.New("customers.byClass")
//	projection.On(p, func(ctx context.Context, tx readmodel.Tx, e *CustomerClassified, m projection.Meta) error {
//		doc, _, err := projection.Get[ClassDoc](ctx, tx, e.Class)
//		if err != nil {
//			return err
//		}
//		doc.Customers = append(doc.Customers, m.Key)
//		return projection.Put(tx, e.Class, doc)
//	})
//
// A Runner (started by the engine) consumes the projection's queue, which
// subscribes to those event types, with one worker per partition; the
// events of one stream arrive on one partition, so the worker sees them in
// publish order. Each event is applied with readmodel.Store.Update, which
// writes the document changes and the stream's checkpoint together (I1)
// and skips an event at or below the checkpoint (I3): a duplicate is acked
// and applied once. An event ahead of a missing one is held (bounded per
// worker, unsettled) until the missing one arrives; events that will never
// arrive (internal events without a public mapper, public events the
// projection does not handle) are recognised in the local event store and
// skipped at once; after GapWait the missing events are taken from the
// event store, and if they are not there (a stream of another service)
// the held events are dead-lettered with the reason. Nothing is applied
// out of order.
//
// Rebuild drops the read model and replays every local stream whose
// aggregate publishes an event the projection handles, from the event
// store, through the same public mappers (aggregate.PublicEnvelope), so a
// rebuild gives the read model the live run gave.
package projection
