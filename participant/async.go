package participant

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// Running the commands from the inbox (see Inbox): a delivery is acked
// once its command is accepted; workers run the handlers after, one
// command at a time per key, in the order accepted.

// inboxWorkers is how many handler calls run at once from the inbox. The
// commands of one key all go to the same worker, so they run in order.
const inboxWorkers = 16

// inboxQueueLimit bounds how many accepted commands wait for a worker. When
// it is reached, the consumer waits for a slot before it accepts (and acks)
// the next delivery, so the broker's prefetch paces the inflow again.
var inboxQueueLimit = 1024

// answerAttempts bounds how often a worker tries to answer one command
// (read the record, call the handler, publish the reply) before it leaves
// the command in the inbox for the next Run.
const answerAttempts = 20

// job is one accepted command and the delivery count it arrived with.
type job struct {
	env      message.Envelope
	delivery int
}

// worker holds the accepted commands of its keys until it runs them.
type worker struct {
	mu     sync.Mutex
	queue  []job
	notify chan struct{} // capacity 1
}

func (w *worker) push(j job) {
	w.mu.Lock()
	w.queue = append(w.queue, j)
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *worker) pop() (job, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		return job{}, false
	}
	j := w.queue[0]
	w.queue[0] = job{}
	w.queue = w.queue[1:]
	return j, true
}

// startWorkers queues the commands the inbox still holds from an earlier
// Run and starts the workers; stop ends them and waits for them (they end
// after the handler call in progress), as does the end of ctx.
func (p *Participant) startWorkers(ctx context.Context, inbox Inbox) (stop func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	p.inbox = inbox
	p.workers = make([]*worker, inboxWorkers)
	p.slots = make(chan struct{}, inboxQueueLimit)
	for i := range p.workers {
		p.workers[i] = &worker{notify: make(chan struct{}, 1)}
	}
	pending, err := inbox.Pending(ctx, p.service)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("participant %s: read the inbox: %w", p.service, err)
	}
	for _, w := range p.workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.work(ctx, w)
		}()
	}
	stop = func() { cancel(); p.wg.Wait() }
	if len(pending) > 0 {
		p.cfg.logger.Info("running the commands accepted before the last stop", "service", p.service, "count", len(pending))
	}
	for _, env := range pending {
		// The workers are running: a backlog over the limit drains while
		// it is queued.
		if !p.takeSlot(ctx) {
			stop()
			return nil, fmt.Errorf("participant %s: queue the inbox's commands: %w", p.service, ctx.Err())
		}
		p.enqueue(job{env: env, delivery: 1})
	}
	return stop, nil
}

// takeSlot waits for room in the workers' queues; false when ctx ended
// first.
func (p *Participant) takeSlot(ctx context.Context) bool {
	select {
	case p.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// freeSlot gives back the slot of a command a worker has run.
func (p *Participant) freeSlot() { <-p.slots }

func (p *Participant) enqueue(j job) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(j.env.Key))
	p.workers[h.Sum32()%uint32(len(p.workers))].push(j)
}

// accept settles a valid command's delivery when the Deduper has an
// inbox: a command answered before gets its recorded reply again; any
// other is accepted into the inbox, acked, and queued for its worker.
func (p *Participant) accept(ctx context.Context, d transport.Delivery) {
	env := d.Envelope()
	if prev, ok, err := p.cfg.deduper.Seen(ctx, p.service, env.ID); err != nil {
		p.retryLater(d, fmt.Errorf("participant %s: dedupe lookup of %s: %w", p.service, env.ID, err))
		return
	} else if ok {
		p.cfg.logger.Info("duplicate command answered with the recorded reply", "service", p.service, "message_id", env.ID, "type", env.Type)
		p.answerDelivery(ctx, d, prev)
		return
	}
	if !p.takeSlot(ctx) {
		p.settle(d, "requeue", func(sctx context.Context) error { return d.Requeue(sctx, ctx.Err()) })
		return
	}
	err := p.inbox.Accept(ctx, p.service, env)
	if err != nil {
		p.freeSlot() // nothing queued for this delivery
	}
	switch {
	case errors.Is(err, ErrAccepted):
		// Accepted by an earlier delivery: it is queued (or pending for
		// the next Run) already.
		p.settle(d, "ack", d.Ack)
	case err != nil && ctx.Err() != nil:
		p.settle(d, "requeue", func(sctx context.Context) error { return d.Requeue(sctx, err) })
	case err != nil:
		p.retryLater(d, fmt.Errorf("participant %s: accept %s: %w", p.service, env.ID, err))
	default:
		p.settle(d, "ack", d.Ack)
		p.enqueue(job{env: env, delivery: d.Attempt()})
	}
}

// answerDelivery publishes reply (none when its ID is empty) and acks d,
// or hands d back for a later delivery when the publish fails.
func (p *Participant) answerDelivery(ctx context.Context, d transport.Delivery, reply message.Envelope) {
	if reply.ID != "" {
		if err := p.publishReply(ctx, reply); err != nil {
			// The reply is recorded: the redelivery publishes it again.
			p.retryLater(d, fmt.Errorf("participant %s: publish reply to %s: %w", p.service, d.Envelope().ID, err))
			return
		}
	}
	p.settle(d, "ack", d.Ack)
}

func (p *Participant) publishReply(ctx context.Context, reply message.Envelope) error {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.settleTimeout)
	defer cancel()
	return p.tr.Publish(pctx, reply)
}

// work runs w's commands until ctx is done.
func (p *Participant) work(ctx context.Context, w *worker) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.notify:
		}
		for ctx.Err() == nil {
			j, ok := w.pop()
			if !ok {
				break
			}
			p.run(ctx, j)
			p.freeSlot()
		}
	}
}

// run answers one accepted command: the handler's outcome (or the reply
// recorded before) is published, then the command is finished in the
// inbox. Failures are retried with backoff; after answerAttempts, or when
// ctx is done, the command stays in the inbox for the next Run.
func (p *Participant) run(ctx context.Context, j job) {
	env := j.env
	var reply message.Envelope
	var err error
	p.mu.RLock()
	h, ok := p.handlers[env.Type]
	p.mu.RUnlock()
	cmd, derr := p.reg.DecodeEnvelope(env)
	for attempt := 1; attempt <= answerAttempts; attempt++ {
		switch {
		case !ok: // accepted by a version of the service that had a handler
			reply, err = p.buildReply(env, nil, Fail(fmt.Errorf("participant %s: %w %q", p.service, ErrNoHandler, env.Type)))
		case derr != nil:
			reply, err = p.buildReply(env, nil, Fail(fmt.Errorf("participant %s: %w", p.service, derr)))
		default:
			reply, err = p.reply(ctx, env, j.delivery, h, cmd)
		}
		if err == nil && reply.ID != "" {
			err = p.publishReply(ctx, reply)
		}
		if err == nil {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.settleTimeout)
			if ferr := p.inbox.Finish(fctx, p.service, env.ID); ferr != nil {
				p.cfg.logger.Warn("inbox finish failed; the command will be answered again by the next Run", "service", p.service, "message_id", env.ID, "err", ferr)
			}
			cancel()
			return
		}
		if ctx.Err() != nil {
			break
		}
		wait := min(p.cfg.retryDelay*20<<min(attempt-1, 10), 30*time.Second)
		p.cfg.logger.Warn("answering a command failed; retrying", "service", p.service, "message_id", env.ID, "attempt", attempt, "of", answerAttempts, "wait", wait, "err", err)
		if !sleep(ctx, wait) {
			break
		}
	}
	p.cfg.logger.Error("command left in the inbox for the next Run", "service", p.service, "message_id", env.ID, "type", env.Type, "err", err)
}
