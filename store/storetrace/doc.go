// Package storetrace is a tracing decorator around any store.Store, in the
// manner of eventhorizon's tracing event store: every call made within a
// traced context (a message being handled, a saga being started) is a
// client span named after the operation, with the stream and version it
// touched and its error. Calls made outside any span (the outbox relay's
// and the timer service's polling) start no trace of their own, so that
// background polling does not flood the trace backend.
//
// The decorator passes every call through unchanged, so the store's
// invariants (I1-I5) are the wrapped store's.
package storetrace
