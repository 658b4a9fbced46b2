// Command bench is sagaflow's benchmark harness. One run measures, on the
// machine it runs on:
//
//   - raw: the limits of what sagaflow is built on. RabbitMQ persistent
//     request/reply over quorum queues with publisher confirms (round
//     trips/s at 1 and 16 in flight), using amqp091-go directly; MongoDB
//     single-document and 100-document batch inserts (documents/s), using
//     the Go driver directly; the embedded store's durable commit rate
//     with one writer and with many writers sharing group commits.
//   - embedded and distributed: a 3-step saga (one command and one reply
//     per step; for a given share of sagas the last step fails with a
//     business failure and steps 2 and 1 are compensated) on the embedded
//     default (embedded store, in-process transport) and on RabbitMQ +
//     MongoDB: sagas/s and start-to-finish latency at full load (a fixed
//     number of sagas kept in flight) and at half load (open loop at half
//     the full-load rate); the messages and store writes each saga cost,
//     and the ratio of the saga rate to the limit the raw rates imply.
//   - memory: the RSS of an engine (a child process) holding 100,000 idle
//     aggregate actors that have each handled one command, and after they
//     were passivated.
//   - recovery: an engine (a child process) killed with SIGKILL while
//     10,000 sagas are in flight, and restarted on the same data: seconds
//     until every saga is running again and until every saga is finished.
//
// Results are printed as a table and written as JSON (-out). -only selects
// sections; -cpuprofile profiles the harness process (which hosts the
// engines of the embedded and distributed sections); -memprofile PREFIX
// writes the memory child's heap profiles with its actors idle and after
// passivation; -halftrace FILE takes an execution trace of the first
// half-load window on the embedded default (`go tool trace -pprof=sched
// FILE` then shows where goroutines waited for a CPU). The JSON has p90
// and p99.9 latencies besides the table's p50 and p99.
//
//	go run ./bench -out bench-results.json
//
// Services: RabbitMQ at SAGAFLOW_AMQP_URL (default the local broker) and
// MongoDB at SAGAFLOW_MONGO_URI; without the latter the harness builds and
// starts tools/devmongo (FerretDB on SQLite) as scripts/test.sh does. A
// section whose service is missing reports "unavailable: <reason>" and the
// others still run. Each run uses its own database and its own RabbitMQ
// names and deletes them at the end. Speeds are measured, never asserted.
package main
