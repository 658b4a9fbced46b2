// Package transporttrace is a tracing decorator around any
// transport.Transport: each Publish is a producer span whose W3C trace
// context is written into the message's headers (which the RabbitMQ
// transport also sends as AMQP headers), and each delivery is a consumer
// span, child of the producer span found in the message's headers, that
// lasts until the delivery is settled. Spans carry the OpenTelemetry
// messaging attributes (messaging.system, messaging.destination.name,
// messaging.message.id, messaging.operation.*). It also counts the
// deliveries in flight per queue (the actors' mailbox depth) and the
// messages dead-lettered.
//
// Like every decorator it changes nothing that the transport contract
// promises: a message is published, delivered and settled exactly as by
// the wrapped transport (I4 and I6 are the wrapped transport's), except
// that with a recording tracer the published copy's traceparent and
// tracestate headers name the producer span.
package transporttrace
