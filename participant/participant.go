package participant

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// Participant serves the commands of one service. Build it with New,
// register handlers with Handle, then Run it.
type Participant struct {
	tr      transport.Transport
	reg     *message.Registry
	service string
	cfg     config

	mu       sync.RWMutex
	handlers map[string]handler // by command type name
	regErrs  []error
	started  atomic.Bool

	inbox   Inbox         // the Deduper's, when it has one: see Inbox
	workers []*worker     // run the inbox's commands, by key
	slots   chan struct{} // one per command accepted and not yet run; bounds the workers' queues
	wg      sync.WaitGroup
}

// Meta is what a handler learns about the command besides its payload.
type Meta struct {
	// MessageID is the command's ID, the key it is deduplicated by.
	MessageID string
	// Type is the command's type name, for example "payments.ChargePayment.v1".
	Type string
	// Key is the aggregate or entity the command is about.
	Key string
	// SagaID and CorrelationID say which saga and business process sent it.
	SagaID, CorrelationID string
	// Source names the engine that sent it.
	Source string
	// Attempt counts the handler's in-place attempts at this delivery, from 1.
	Attempt int
	// Delivery counts the transport's deliveries of the command, from 1.
	Delivery int
	// Headers are the command's headers (trace context, reply-to).
	Headers map[string]string
}

type handler struct {
	call func(ctx context.Context, cmd any, m Meta) (any, error)
}

type config struct {
	deduper        Deduper
	logger         *slog.Logger
	now            func() time.Time
	prefetch       int
	attempts       int
	retryDelay     time.Duration
	maxRetryDelay  time.Duration
	handlerTimeout time.Duration
	settleTimeout  time.Duration
}

// Option configures a Participant.
type Option func(*config)

// WithDeduper sets where handled message IDs and their replies are kept
// (default: a MemoryDeduper, which is only fit for tests).
func WithDeduper(d Deduper) Option { return func(c *config) { c.deduper = d } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithClock sets the clock that stamps replies (default time.Now).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithPrefetch bounds the unsettled deliveries per partition (default 16).
func WithPrefetch(n int) Option { return func(c *config) { c.prefetch = n } }

// WithRetry sets how often a handler that returns a technical error is
// called for one delivery (default 3) and the wait before the second call,
// which doubles per call up to maxDelay (defaults 50ms and 1s). When the
// attempts are spent, the reply is a retryable failure and the saga's
// retry policy takes over.
func WithRetry(attempts int, delay, maxDelay time.Duration) Option {
	return func(c *config) { c.attempts, c.retryDelay, c.maxRetryDelay = attempts, delay, maxDelay }
}

// WithHandlerTimeout bounds each handler call (default 30s). A graceful
// stop lets the call in progress finish within it.
func WithHandlerTimeout(d time.Duration) Option { return func(c *config) { c.handlerTimeout = d } }

// New returns a participant that serves the commands sent to service over
// tr, with payload types from reg (the service registers its command and
// result types there; the reply types every engine shares are added).
func New(tr transport.Transport, reg *message.Registry, service string, opts ...Option) *Participant {
	cfg := config{
		logger: slog.Default(), now: time.Now, prefetch: 16, attempts: 3,
		retryDelay: 50 * time.Millisecond, maxRetryDelay: time.Second,
		handlerTimeout: 30 * time.Second, settleTimeout: 10 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	p := &Participant{tr: tr, reg: reg, service: service, cfg: cfg, handlers: make(map[string]handler)}
	var errs []error
	if tr == nil || reg == nil {
		errs = append(errs, errors.New("participant: transport and registry are required"))
	} else if err := message.RegisterBuiltins(reg); err != nil {
		errs = append(errs, fmt.Errorf("participant %s: %w", service, err))
	}
	if service == "" {
		errs = append(errs, errors.New("participant: empty service name"))
	}
	if cfg.deduper == nil {
		p.cfg.deduper = NewMemoryDeduper()
	}
	if cfg.logger == nil {
		p.cfg.logger = slog.Default()
	}
	if cfg.now == nil {
		p.cfg.now = time.Now
	}
	if cfg.prefetch < 1 || cfg.prefetch > 65535 {
		errs = append(errs, fmt.Errorf("participant %s: prefetch %d: want 1 to 65535", service, cfg.prefetch))
	}
	if cfg.attempts < 1 || cfg.attempts > 100 {
		errs = append(errs, fmt.Errorf("participant %s: retry attempts %d: want 1 to 100", service, cfg.attempts))
	}
	if cfg.retryDelay < 0 || cfg.maxRetryDelay < cfg.retryDelay {
		errs = append(errs, fmt.Errorf("participant %s: retry delays %v..%v: want 0 <= delay <= max", service, cfg.retryDelay, cfg.maxRetryDelay))
	}
	if cfg.handlerTimeout <= 0 {
		errs = append(errs, fmt.Errorf("participant %s: handler timeout %v: want > 0", service, cfg.handlerTimeout))
	}
	p.regErrs = errs
	return p
}

// Service returns the name of the service (and queue) the participant serves.
func (p *Participant) Service() string { return p.service }

// Handle registers fn as the handler of commands of type C on p. C and R
// must be registered in p's registry. fn returns the result the reply
// carries (nil: message.Accepted), an error made with Fail for a business
// failure, or any other error for a technical one. Registration problems
// (an unregistered type, a second handler for C, Handle after Run) are
// returned by Err and Run.
func Handle[C, R any](p *Participant, fn func(ctx context.Context, cmd *C, m Meta) (*R, error)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name, err := p.reg.TypeNameOf(new(C))
	if err == nil {
		_, err = p.reg.TypeNameOf(new(R))
	}
	switch {
	case err != nil:
		p.regErrs = append(p.regErrs, fmt.Errorf("participant %s: handle: %w; register it in the registry first", p.service, err))
		return
	case p.started.Load():
		p.regErrs = append(p.regErrs, fmt.Errorf("participant %s: handler for %q registered after Run", p.service, name))
		return
	case fn == nil:
		p.regErrs = append(p.regErrs, fmt.Errorf("participant %s: nil handler for %q", p.service, name))
		return
	}
	if _, dup := p.handlers[name]; dup {
		p.regErrs = append(p.regErrs, fmt.Errorf("participant %s: second handler for %q", p.service, name))
		return
	}
	p.handlers[name] = handler{call: func(ctx context.Context, v any, m Meta) (any, error) {
		cmd, ok := v.(*C)
		if !ok {
			return nil, fmt.Errorf("participant %s: %q decoded to %T, want %T", p.service, name, v, cmd)
		}
		r, err := fn(ctx, cmd, m)
		if r == nil {
			return nil, err
		}
		return r, err
	}}
}

// Err returns the problems found by New and Handle so far.
func (p *Participant) Err() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return errors.Join(p.regErrs...)
}

// Run declares the service's queue and serves its commands until ctx is
// done, then stops gracefully: it takes no new delivery, lets the handler
// calls in progress finish (within the handler timeout) and settles their
// deliveries before it returns (with an Inbox, the deliveries are settled
// already, and the accepted commands not yet run wait in the inbox for the
// next Run). A Participant runs once.
func (p *Participant) Run(ctx context.Context) error {
	if err := p.Err(); err != nil {
		return err
	}
	if !p.started.CompareAndSwap(false, true) {
		return fmt.Errorf("participant %s: Run called twice", p.service)
	}
	if err := p.tr.Declare(ctx, transport.Queue{Name: p.service}); err != nil {
		return fmt.Errorf("participant %s: declare queue: %w", p.service, err)
	}
	if inbox, ok := p.cfg.deduper.(Inbox); ok {
		stopWorkers, err := p.startWorkers(ctx, inbox)
		if err != nil {
			return err
		}
		defer stopWorkers()
	}
	p.mu.RLock()
	n := len(p.handlers)
	p.mu.RUnlock()
	p.cfg.logger.Info("participant serving", "service", p.service, "commands", n)
	if err := p.tr.Consume(ctx, p.service, p.cfg.prefetch, p.handle); err != nil {
		return fmt.Errorf("participant %s: %w", p.service, err)
	}
	return nil
}

// handle settles one delivery: see the package doc.
func (p *Participant) handle(ctx context.Context, d transport.Delivery) {
	env := d.Envelope()
	if env.Kind != message.KindCommand {
		p.deadLetter(d, fmt.Errorf("participant %s: %w: got a %s of type %q", p.service, ErrNotCommand, env.Kind, env.Type))
		return
	}
	p.mu.RLock()
	h, ok := p.handlers[env.Type]
	p.mu.RUnlock()
	if !ok {
		p.deadLetter(d, fmt.Errorf("participant %s: %w %q", p.service, ErrNoHandler, env.Type))
		return
	}
	cmd, err := p.reg.DecodeEnvelope(env)
	if err != nil {
		p.deadLetter(d, fmt.Errorf("participant %s: %w", p.service, err))
		return
	}
	if p.inbox != nil {
		p.accept(ctx, d)
		return
	}
	reply, err := p.reply(ctx, env, d.Attempt(), h, cmd)
	if err != nil {
		if ctx.Err() != nil {
			p.settle(d, "requeue", func(sctx context.Context) error { return d.Requeue(sctx, err) })
			return
		}
		p.retryLater(d, err)
		return
	}
	p.answerDelivery(ctx, d, reply)
}

// reply returns the reply to the command: the recorded one if it was
// handled before, else the outcome of the handler, recorded. An error
// means the delivery should be tried again later.
func (p *Participant) reply(ctx context.Context, env message.Envelope, delivery int, h handler, cmd any) (message.Envelope, error) {
	if prev, ok, err := p.cfg.deduper.Seen(ctx, p.service, env.ID); err != nil {
		return message.Envelope{}, fmt.Errorf("participant %s: dedupe lookup of %s: %w", p.service, env.ID, err)
	} else if ok {
		p.cfg.logger.Info("duplicate command answered with the recorded reply", "service", p.service, "message_id", env.ID, "type", env.Type)
		return prev, nil
	}
	meta := Meta{
		MessageID: env.ID, Type: env.Type, Key: env.Key, SagaID: env.SagaID, CorrelationID: env.CorrelationID,
		Source: env.Source, Delivery: delivery, Headers: env.Clone().Headers,
	}
	var lastErr error
	for attempt := 1; attempt <= p.cfg.attempts; attempt++ {
		if attempt > 1 && !sleep(ctx, p.backoff(attempt-1)) {
			return message.Envelope{}, fmt.Errorf("participant %s: stopped before attempt %d of %s: %w", p.service, attempt, env.ID, lastErr)
		}
		meta.Attempt = attempt
		// A stop does not cut a call short: the change and its record are
		// made together or not at all, within the handler timeout.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.handlerTimeout)
		reply, err := p.cfg.deduper.Once(wctx, p.service, env.ID, func(hctx context.Context) (message.Envelope, error) {
			res, err := p.call(hctx, h, cmd, meta)
			if err != nil && !IsFailure(err) {
				return message.Envelope{}, err
			}
			return p.buildReply(env, res, err)
		})
		cancel()
		if err == nil {
			return reply, nil
		}
		if errors.Is(err, ErrDuplicate) {
			prev, ok, serr := p.cfg.deduper.Seen(ctx, p.service, env.ID)
			if serr != nil || !ok {
				return message.Envelope{}, fmt.Errorf("participant %s: %s recorded by another delivery, but its reply cannot be read: %w", p.service, env.ID, errors.Join(err, serr))
			}
			return prev, nil
		}
		lastErr = err
		p.cfg.logger.Warn("command failed with a technical error", "service", p.service, "message_id", env.ID, "type", env.Type, "attempt", attempt, "of", p.cfg.attempts, "err", err)
	}
	// Nothing was applied: answer a retryable failure without recording
	// it, so the saga's retry policy (with its backoff) takes over.
	return p.buildReply(env, nil, fmt.Errorf("%s failed after %d attempts: %w", env.Type, p.cfg.attempts, lastErr))
}

// call runs the handler, turning a panic into a technical error.
func (p *Participant) call(ctx context.Context, h handler, cmd any, m Meta) (res any, err error) {
	defer func() {
		if v := recover(); v != nil {
			p.cfg.logger.Error("handler panicked", "service", p.service, "message_id", m.MessageID, "type", m.Type, "panic", v, "stack", string(debug.Stack()))
			res, err = nil, fmt.Errorf("%w: %v", ErrPanic, v)
		}
	}()
	return h.call(ctx, cmd, m)
}

// buildReply makes the reply envelope the saga machine accepts, exactly as
// the engine's own aggregates do: kind reply, to the command's reply-to
// queue, keyed by the saga, caused by the command. A business failure or a
// technical error becomes a message.Failure; a nil result message.Accepted.
// A command without reply-to gets no reply (the zero Envelope).
func (p *Participant) buildReply(cmd message.Envelope, res any, failed error) (message.Envelope, error) {
	replyTo := cmd.Header(message.HeaderReplyTo)
	if replyTo == "" {
		return message.Envelope{}, nil
	}
	body := res
	switch {
	case failed != nil:
		body = &message.Failure{Reason: failed.Error(), Retryable: !IsFailure(failed)}
	case body == nil:
		body = &message.Accepted{}
	}
	typeName, payload, err := p.reg.Encode(body)
	if err != nil {
		return message.Envelope{}, fmt.Errorf("participant %s: reply to %s: %w", p.service, cmd.Type, err)
	}
	key := cmd.SagaID
	if key == "" {
		key = cmd.Key
	}
	return message.Envelope{
		ID: message.NewID(), Kind: message.KindReply, Type: typeName, Source: p.service,
		Destination: replyTo, Key: key, SagaID: cmd.SagaID, CorrelationID: cmd.CorrelationID,
		CausationID: cmd.ID, OccurredAt: p.cfg.now(), Payload: payload,
	}, nil
}

// backoff is the wait before in-place retry n (from 1): the retry delay
// doubled n-1 times, at most the max, with full jitter.
func (p *Participant) backoff(n int) time.Duration {
	d := p.cfg.retryDelay
	for i := 1; i < n && d < p.cfg.maxRetryDelay; i++ {
		d *= 2
	}
	d = min(d, p.cfg.maxRetryDelay)
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)) + 1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// settle runs one settlement of d with a bounded context, logging failure
// (the transport then redelivers, which the Deduper absorbs).
func (p *Participant) settle(d transport.Delivery, what string, f func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.settleTimeout)
	defer cancel()
	if err := f(ctx); err != nil {
		p.cfg.logger.Warn("settle failed; the command will be redelivered", "service", p.service, "what", what, "message_id", d.Envelope().ID, "err", err)
	}
}

func (p *Participant) deadLetter(d transport.Delivery, reason error) {
	e := d.Envelope()
	p.cfg.logger.Warn("dead-lettering command", "service", p.service, "message_id", e.ID, "type", e.Type, "reason", reason)
	p.settle(d, "dead-letter", func(ctx context.Context) error { return d.DeadLetter(ctx, reason) })
}

// retryLater hands the delivery back to the transport for a later
// delivery, with a delay that grows with its deliveries; at the delivery
// limit the transport dead-letters it with reason.
func (p *Participant) retryLater(d transport.Delivery, reason error) {
	delay := p.cfg.retryDelay * 20
	for i := 1; i < d.Attempt() && delay < time.Minute; i++ {
		delay *= 2
	}
	delay = min(max(delay, 100*time.Millisecond), time.Minute)
	e := d.Envelope()
	p.cfg.logger.Warn("handing command back for a delayed retry", "service", p.service, "message_id", e.ID, "attempt", d.Attempt(), "delay", delay, "reason", reason)
	p.settle(d, "retry", func(ctx context.Context) error { return d.Retry(ctx, delay, reason) })
}
