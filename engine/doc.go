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
// Once Ready is closed, Start, Get, List, Cancel and Send can be called
// from any goroutine.
package engine
