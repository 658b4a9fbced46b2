// Package telemetry owns sagaflow's OpenTelemetry plumbing: tracer and
// meter providers configured from the standard OTEL_* environment
// variables (Setup), the W3C trace-context propagation of a message's
// context through its envelope headers (Inject, Extract, DeliveryContext),
// the AMQP header carrier for services that read RabbitMQ messages
// themselves (AMQPCarrier), the engine's metric instruments (Metrics), and
// a log/slog handler that adds trace_id, span_id and saga_id to every
// record written with a context (LogHandler).
//
// Telemetry is observation only: nothing here changes what is persisted
// or acknowledged, so it upholds no invariant of its own and must not
// weaken any. A span or metric that cannot be recorded is dropped, never
// an error for the caller. The only state it adds to persisted data is the
// trace context carried in message headers and in a saga's commits, which
// lets a saga resumed after a restart stay in its trace.
package telemetry
