package actors

import (
	"sync/atomic"
	"time"
)

// workerPool is the actor.Dispatcher of keyed actors: it runs a scheduled
// mailbox on a pooled goroutine that is waiting for work, and on a new
// goroutine otherwise, as Proto.Actor's default dispatcher always does.
//
// A goroutine starts with a small stack that grows by copying the first
// time a handler goes deep (JSON encoding, Pebble, the store's writer
// round trip); with a new goroutine per mailbox run, the engine's profile
// showed runtime.newstack at 4-6% of its CPU. A pooled goroutine keeps its
// grown stack from run to run.
//
// Schedule never blocks and never waits for a worker, so a mailbox run
// that blocks (on a commit's durability, say) holds up no other mailbox:
// at most max goroutines are pooled, the rest run as before. A worker with
// no work for idle ends, so an idle engine holds no pooled goroutines.
type workerPool struct {
	// work hands a run to a worker that waits on it; unbuffered, so that
	// a send succeeds only when a worker is there to take it.
	work       chan func()
	workers    atomic.Int64 // pooled goroutines, busy or waiting
	waiting    atomic.Int64 // pooled goroutines waiting for work
	max        int64
	idle       time.Duration
	throughput int
}

// newWorkerPool returns a pool of at most max goroutines, each ending
// after idle without work, whose mailboxes yield after throughput
// messages.
func newWorkerPool(max int, idle time.Duration, throughput int) *workerPool {
	return &workerPool{work: make(chan func()), max: int64(max), idle: idle, throughput: throughput}
}

// keyedDispatcher is shared by every keyed actor of the process, as
// Proto.Actor's default dispatcher is: 1,024 pooled goroutines cover the
// engine's in-flight work at full load (the bench runs 1,000 sagas in
// flight); they end after 25 ms without work, which a loaded engine never
// leaves them (with a second, their stacks were 3.5 MiB of the memory
// bench's RSS right after its last command). The throughput is
// Proto.Actor's default.
var keyedDispatcher = newWorkerPool(1024, 25*time.Millisecond, 300)

// Schedule implements actor.Dispatcher.
func (p *workerPool) Schedule(fn func()) {
	select {
	case p.work <- fn:
		return
	default:
	}
	if p.workers.Add(1) <= p.max {
		go p.worker(fn)
		return
	}
	p.workers.Add(-1)
	go fn()
}

// Throughput implements actor.Dispatcher.
func (p *workerPool) Throughput() int { return p.throughput }

// worker runs fn, then whatever is handed to it, until it has waited idle
// for work.
func (p *workerPool) worker(fn func()) {
	defer p.workers.Add(-1)
	wait := time.NewTimer(p.idle)
	defer wait.Stop()
	for {
		fn()
		fn = nil // not kept alive while waiting
		wait.Reset(p.idle)
		p.waiting.Add(1)
		select {
		case fn = <-p.work:
			p.waiting.Add(-1)
		case <-wait.C:
			p.waiting.Add(-1)
			return
		}
	}
}
