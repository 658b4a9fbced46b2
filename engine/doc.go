// Package engine is sagaflow's facade: New(Options).Register(...).Run(ctx)
// wires a store, a transport, the actor system, the outbox relay, the timer
// service and the admin HTTP API around the workflows, aggregates and
// message types registered on the Engine value. There are no globals and no
// init() registration: a program builds its daemon by registering its own
// definitions and calling Run.
//
// With no store and no transport given, the engine runs on the embedded
// default: store/embedded in Options.DataDir and transport/inmem.
//
// Once Ready is closed, the operator calls (StartSaga, GetSaga, ListSagas,
// SagaHistory, SignalSaga, CancelSaga, RetrySaga, the dead-letter calls,
// Send) can be made from any goroutine; the admin HTTP API (AdminHandler)
// is a thin JSON layer over them, behind Options.AdminToken when set, and
// HandleAdmin mounts more handlers (the console) on it.
//
// When Run's context ends, the engine stops gracefully: operator calls
// answer ErrNotRunning, deliveries being handled finish within
// Options.ShutdownTimeout while new ones are held back for redelivery, and
// the outbox is flushed before the store and transport close.
package engine
