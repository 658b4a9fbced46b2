package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/sync/errgroup"

	"github.com/sagaflow/sagaflow/actors"
	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/projection"
	"github.com/sagaflow/sagaflow/shred"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
	"github.com/sagaflow/sagaflow/telemetry"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/workflows"
)

// Errors the engine returns; test with errors.Is.
var (
	// ErrNotRunning: the engine is not (or no longer) running.
	ErrNotRunning = errors.New("engine not running")
	// ErrUnknownWorkflow: no workflow of that name is registered.
	ErrUnknownWorkflow = errors.New("unknown workflow")
	// ErrSagaNotFound: no saga has that ID.
	ErrSagaNotFound = errors.New("saga not found")
	// ErrSagaFinished: the saga has finished and cannot be cancelled.
	ErrSagaFinished = errors.New("saga already finished")
	// ErrInvalidRequest: a request to the engine is malformed.
	ErrInvalidRequest = errors.New("invalid request")
)

// Engine runs registered workflows and aggregates. Build it with New,
// Register definitions, then Run it.
type Engine struct {
	opts     Options
	registry *message.Registry
	logger   *slog.Logger
	tel      *telemetry.Instruments

	mu         sync.RWMutex
	workflows  map[string]map[int]workflows.Workflow
	aggregates map[string]aggregate.Type // by service
	regErrs    []error

	deps     *actors.Deps
	ready    chan struct{}
	started  atomic.Bool
	running  atomic.Bool
	adminURL atomic.Value // string

	adminMounts []adminMount // guarded by mu; see HandleAdmin

	proj projections // projections and read models (projections.go)
}

// MessageType is a registration of a Go struct under a type name; make one
// with Message.
type MessageType struct {
	register func(r *message.Registry) error
	name     string
}

// Message registers Go type T under typeName (for example
// "inventory.ReserveStock.v1") when passed to Register.
func Message[T any](typeName string) MessageType {
	return MessageType{name: typeName, register: func(r *message.Registry) error { return message.Register[T](r, typeName) }}
}

// New returns an engine with opts (see Options for the defaults).
func New(opts Options) *Engine {
	opts = opts.withDefaults()
	e := &Engine{
		opts:       opts,
		registry:   message.NewRegistry(nil),
		logger:     slog.New(telemetry.NewLogHandler(opts.Logger.Handler())),
		workflows:  make(map[string]map[int]workflows.Workflow),
		aggregates: make(map[string]aggregate.Type),
		ready:      make(chan struct{}),
	}
	if err := actors.RegisterMessages(e.registry); err != nil {
		e.regErrs = append(e.regErrs, err)
	}
	tel, err := telemetry.NewInstruments(opts.TracerProvider, opts.MeterProvider, opts.Propagator)
	if err != nil {
		e.regErrs = append(e.regErrs, err)
	}
	e.tel = tel
	if err := opts.validate(); err != nil {
		e.regErrs = append(e.regErrs, err)
	}
	return e
}

// Register adds workflow definitions (workflows.Workflow), aggregate types
// (aggregate.Type), projections (*projection.Projection) and message
// types (MessageType, from Message). Message
// types should come first: an aggregate's command and event types must be
// registered. Problems are collected and returned by Err and Run.
func (e *Engine) Register(items ...any) *Engine {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, it := range items {
		if err := e.registerOne(it); err != nil {
			e.regErrs = append(e.regErrs, err)
		}
	}
	return e
}

func (e *Engine) registerOne(it any) error {
	switch v := it.(type) {
	case MessageType:
		return v.register(e.registry)
	case workflows.Workflow:
		if err := v.Validate(); err != nil {
			return err
		}
		versions := e.workflows[v.Name()]
		if versions == nil {
			versions = make(map[int]workflows.Workflow)
			e.workflows[v.Name()] = versions
		}
		if _, dup := versions[v.Version()]; dup {
			return fmt.Errorf("workflow %q v%d registered twice", v.Name(), v.Version())
		}
		versions[v.Version()] = workflows.Freeze(v)
		return nil
	case *projection.Projection:
		return e.registerProjection(v)
	case aggregate.Type:
		if err := v.Validate(); err != nil {
			return err
		}
		if err := e.checkPublicEvents(v); err != nil {
			return err
		}
		if have, dup := e.aggregates[v.Service()]; dup {
			return fmt.Errorf("aggregate %q: service %q already serves aggregate %q", v.Name(), v.Service(), have.Name())
		}
		if v.Service() == e.opts.Name {
			return fmt.Errorf("aggregate %q: service %q is the engine's own saga queue", v.Name(), v.Service())
		}
		for _, t := range append(v.Commands(), v.Events()...) {
			if _, err := e.registry.TypeNameOf(reflectZero(t)); err != nil {
				return fmt.Errorf("aggregate %q: %w; register it with engine.Message first", v.Name(), err)
			}
		}
		for _, t := range v.Events() {
			if err := shred.Check(t); err != nil {
				return fmt.Errorf("aggregate %q: %w", v.Name(), err)
			}
		}
		e.aggregates[v.Service()] = v
		return nil
	default:
		return fmt.Errorf("register: %T is not a workflow, an aggregate or a message type", it)
	}
}

// Err returns the registration problems found so far.
func (e *Engine) Err() error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return errors.Join(e.regErrs...)
}

// Registry returns the engine's message type registry.
func (e *Engine) Registry() *message.Registry { return e.registry }

// Ready is closed once Run has started everything and the engine accepts
// calls.
func (e *Engine) Ready() <-chan struct{} { return e.ready }

// AdminURL returns the admin API's base URL ("" until ready or when off).
func (e *Engine) AdminURL() string {
	s, _ := e.adminURL.Load().(string)
	return s
}

// workflow finds a workflow by name and version (0: the latest).
func (e *Engine) workflow(name string, version int) (workflows.Workflow, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	versions := e.workflows[name]
	if version > 0 {
		wf, ok := versions[version]
		return wf, ok
	}
	var latest workflows.Workflow
	for v, wf := range versions {
		if latest == nil || v > latest.Version() {
			latest = wf
		}
	}
	return latest, latest != nil
}

// Workflows returns the registered workflows, by name then version.
func (e *Engine) Workflows() []workflows.Workflow {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []workflows.Workflow
	for _, versions := range e.workflows {
		for _, wf := range versions {
			out = append(out, wf)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name() != out[j].Name() {
			return out[i].Name() < out[j].Name()
		}
		return out[i].Version() < out[j].Version()
	})
	return out
}

// Run opens the store and transport (unless given), starts consumers,
// relay, timers and the admin API, resumes the sagas that were running,
// and blocks until ctx is done. It then stops taking work and closes
// everything it opened. An Engine runs once.
func (e *Engine) Run(ctx context.Context) (err error) {
	if err := e.Err(); err != nil {
		return err
	}
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("engine: Run called twice; build a new Engine to run again")
	}
	o := e.opts
	st := o.Store
	if st == nil {
		st, err = embedded.Open(ctx, o.DataDir, embedded.WithLogger(e.logger))
		if err != nil {
			return fmt.Errorf("open embedded store in %s: %w", o.DataDir, err)
		}
		defer closeLogged(e.logger, "store", st.Close)
	}
	tr := o.Transport
	if tr == nil {
		tr = inmem.New(inmem.WithPartitions(o.Partitions), inmem.WithLogger(e.logger))
		defer closeLogged(e.logger, "transport", tr.Close)
	}
	gate := newDrainGate(tr)
	tracedStore, tracedTransport := e.traced(st, gate)
	e.deps = &actors.Deps{
		Store: tracedStore, Transport: tracedTransport, Registry: e.registry, Logger: e.logger, Now: o.Now,
		SagaQueue: o.Name, Source: o.Name, Workflows: e.workflow,
		RetryDelay: o.RetryDelay, MaxRetryDelay: o.MaxRetryDelay, Breakers: e.breakers(),
		Sealer:    shred.New(st, e.registry, shred.WithLogger(e.logger), shred.WithClock(o.Now)),
		Telemetry: e.tel,
	}
	marks := actors.NewMarkQueue(e.deps)
	e.deps.Marks = marks
	// Normally stop closes marks before the relay's last flush; this
	// covers the returns before the engine runs.
	defer marks.Close(context.Background())
	unobserve, err := e.observe(st, tracedTransport, tr)
	if err != nil {
		return err
	}
	defer func() { _ = unobserve() }()
	if err := e.declare(ctx); err != nil {
		return err
	}
	closeProjections, err := e.openProjections(ctx)
	if err != nil {
		return err
	}
	defer closeProjections()

	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(warnOnly{e.logger.Handler()}).With("component", "protoactor")
	}))
	defer system.Shutdown()

	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	idle := o.IdleTimeout
	if idle < 0 {
		idle = 0
	}
	consumers := []*actors.Consumer{
		actors.NewConsumer(workCtx, system, e.deps, o.Name, o.Partitions, o.Prefetch, actors.NewSagaFactory(e.deps), idle),
	}
	for service, t := range e.aggregates {
		consumers = append(consumers, actors.NewConsumer(workCtx, system, e.deps, service, o.Partitions, o.Prefetch, actors.NewAggregateFactory(e.deps, t), idle))
	}

	var srv *http.Server
	if o.AdminAddr != AdminOff {
		ln, err := net.Listen("tcp", o.AdminAddr)
		if err != nil {
			return fmt.Errorf("admin API: listen on %s: %w", o.AdminAddr, err)
		}
		srv = &http.Server{Handler: e.AdminHandler(), ReadHeaderTimeout: 5 * time.Second}
		srv.RegisterOnShutdown(e.endStreams)
		e.adminURL.Store("http://" + ln.Addr().String())
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				e.logger.Error("admin API stopped", "err", err)
			}
		}()
	}

	g, gctx := errgroup.WithContext(workCtx)
	for _, c := range consumers {
		g.Go(func() error { return c.Run(gctx) })
	}
	relay := actors.NewOutboxRelay(e.deps)
	relay.Interval = o.RelayInterval
	g.Go(func() error { return relay.Run(gctx) })
	timers := actors.NewTimerService(e.deps)
	timers.Interval = o.TimerInterval
	g.Go(func() error { return timers.Run(gctx) })
	e.runProjections(g, gctx)

	// Resume what was unfinished before taking new work, so that the scan
	// sees only sagas of the previous run.
	if err := e.resumeUnfinished(ctx); err != nil {
		stopWork()
		_ = g.Wait()
		for _, c := range consumers {
			c.Stop()
		}
		if srv != nil {
			_ = srv.Close()
		}
		return err
	}
	e.running.Store(true)
	close(e.ready)
	e.logger.Info("sagaflow engine running", "name", o.Name, "admin", e.AdminURL(), "partitions", o.Partitions)

	select {
	case <-ctx.Done():
	case <-gctx.Done():
	}
	e.running.Store(false)
	return e.stop(stopWork, g, gate, consumers, marks, relay, srv)
}

// stop is the graceful end of Run: the admin API already refuses new work
// (503) and stays up while the deliveries being handled finish, within
// ShutdownTimeout; then the consumers stop (what they held goes back to
// the queues), the queued outbox marks are written, the outbox is flushed
// once more and the admin API closes.
func (e *Engine) stop(stopWork context.CancelFunc, g *errgroup.Group, gate *drainGate, consumers []*actors.Consumer, marks *actors.MarkQueue, relay *actors.OutboxRelay, srv *http.Server) error {
	o := e.opts
	start := time.Now()
	e.logger.Info("sagaflow engine stopping: taking no new work, finishing what is in flight", "timeout", o.ShutdownTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer cancel()
	if left := gate.drain(dctx); left > 0 {
		e.logger.Warn("shutdown timeout: messages still in flight are abandoned and will be delivered again", "in_flight", left, "timeout", o.ShutdownTimeout)
	}
	stopWork()
	runErr := g.Wait()
	for _, c := range consumers {
		c.Stop()
	}
	fctx, fcancel := context.WithTimeout(context.Background(), max(o.ShutdownTimeout-time.Since(start), time.Second))
	// The outbox marks the actors queued go to the store first, so that
	// the relay's flush does not publish those messages again.
	marks.Close(fctx)
	relay.Flush(fctx)
	fcancel()
	if srv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), time.Second)
		_ = srv.Shutdown(sctx)
		scancel()
	}
	e.logger.Info("sagaflow engine stopped", "took", time.Since(start).Round(time.Millisecond))
	return runErr
}

// declare makes the saga queue and every aggregate service queue exist.
func (e *Engine) declare(ctx context.Context) error {
	queues := []transport.Queue{{Name: e.opts.Name, Events: e.awaitedEvents()}}
	for service := range e.aggregates {
		queues = append(queues, transport.Queue{Name: service})
	}
	for _, q := range queues {
		if err := e.deps.Transport.Declare(ctx, q); err != nil {
			return fmt.Errorf("declare queue %s: %w", q.Name, err)
		}
	}
	return nil
}

// resumeUnfinished sends a Resume to every saga that was running or
// compensating when the engine last stopped, so that a saga waiting for a
// reply that was lost sends its command again.
func (e *Engine) resumeUnfinished(ctx context.Context) error {
	after, resumed := "", 0
	for range 1_000_000 / 500 { // bounded: a million unfinished sagas
		page, err := e.deps.Store.List(ctx, store.ListFilter{
			Kind: "saga", Status: []string{string(workflows.StatusRunning), string(workflows.StatusCompensating)},
			After: after, Limit: 500,
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("resume unfinished sagas: %w", err)
		}
		for _, info := range page {
			id := info.Stream[len("saga/"):]
			if err := e.sendControl(ctx, id, info.Meta.CorrelationID, &workflows.ResumeSaga{}); err != nil {
				return fmt.Errorf("resume saga %s: %w", id, err)
			}
			resumed++
		}
		if len(page) < 500 {
			break
		}
		after = page[len(page)-1].Stream
	}
	if resumed > 0 {
		e.logger.Info("resumed unfinished sagas", "count", resumed)
	}
	return nil
}

// sendControl publishes a control message to saga id.
func (e *Engine) sendControl(ctx context.Context, id, correlationID string, body any) error {
	env, err := e.registry.New(message.KindCommand, id, body)
	if err != nil {
		return err
	}
	env.Destination, env.Source, env.SagaID, env.CorrelationID = e.opts.Name, e.opts.Name, id, correlationID
	env.OccurredAt = e.opts.Now()
	return e.deps.Transport.Publish(ctx, env)
}

func closeLogged(l *slog.Logger, what string, f func() error) {
	if err := f(); err != nil {
		l.Warn("close failed", "what", what, "err", err)
	}
}

// warnOnly passes on records of level Warn and above (Proto.Actor logs
// every actor start at Info).
type warnOnly struct{ slog.Handler }

// Enabled implements slog.Handler.
func (w warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}

// WithAttrs implements slog.Handler, keeping the filter.
func (w warnOnly) WithAttrs(attrs []slog.Attr) slog.Handler {
	return warnOnly{w.Handler.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler, keeping the filter.
func (w warnOnly) WithGroup(name string) slog.Handler {
	return warnOnly{w.Handler.WithGroup(name)}
}

// reflectZero returns a pointer to a zero value of t.
func reflectZero(t reflect.Type) any { return reflect.New(t).Interface() }
