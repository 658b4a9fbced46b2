// Package aggregate is sagaflow's event-sourcing model: an aggregate type is
// a Go state type with decide functions (command -> events, or a rejection)
// and apply functions (event -> new state). It does no I/O; the aggregate
// actor (package actors) loads the stream, calls Decide and Apply, and
// commits the events with the handled command ID and the reply in one write
// (invariants I1-I3).
//
//	inv := aggregate.New[Stock]("inventory", "inventory.Reservation", func(id string) Stock { return Stock{ID: id} })
//	aggregate.Handle(inv, func(s Stock, c *ReserveStock) ([]any, error) { ... })
//	aggregate.Apply(inv, func(s Stock, e *StockReserved) Stock { ... })
//
// A decide error is a business rejection: the sender gets a failure reply
// and nothing is recorded but the handled command ID. Wrap an error with
// Retryable when trying again later may succeed.
//
// SnapshotEvery(n) makes the actor snapshot the state every n events
// (Snapshotting says how to encode it and names its shape); a load starts
// from the latest snapshot that fits the state type and replays the rest.
package aggregate
