package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sagaflow/sagaflow/actors"
	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/projection"
	"github.com/sagaflow/sagaflow/readmodel"
	rmembedded "github.com/sagaflow/sagaflow/readmodel/embedded"
)

// Errors of the projection and read-model calls; test with errors.Is.
var (
	// ErrUnknownProjection: no projection of that name is registered.
	ErrUnknownProjection = errors.New("unknown projection")
	// ErrNotReached: a read model did not reach the asked position in
	// the time given.
	ErrNotReached = errors.New("read model has not reached the version")
)

// projections is the engine's projection state: the registered
// definitions, and once running, their runners and the read-model store.
type projections struct {
	defs    []*projection.Projection // guarded by Engine.mu until Run
	runners map[string]*projection.Runner
	rm      readmodel.Store
	hub     readmodel.Hub

	// streamsEnd is closed when the admin server shuts down, which ends
	// every server-sent-event stream.
	streamsEnd  chan struct{}
	endOnce     sync.Once
	bg          sync.WaitGroup // async rebuilds
	bgCtx       context.Context
	bgCancel    context.CancelFunc
	rebuildErrs sync.Map // name -> error of the latest async rebuild
}

func (e *Engine) registerProjection(p *projection.Projection) error {
	if err := p.Validate(); err != nil {
		return err
	}
	for _, have := range e.proj.defs {
		if have.Name() == p.Name() {
			return fmt.Errorf("projection %q registered twice", p.Name())
		}
	}
	for _, t := range p.Events() {
		if _, err := e.registry.TypeNameOf(reflectZero(t)); err != nil {
			return fmt.Errorf("projection %q: %w; register it with engine.Message first", p.Name(), err)
		}
	}
	e.proj.defs = append(e.proj.defs, p)
	return nil
}

// checkPublicEvents refuses an aggregate whose public event types are not
// registered.
func (e *Engine) checkPublicEvents(t aggregate.Type) error {
	p, ok := t.(aggregate.Publisher)
	if !ok {
		return nil
	}
	for _, pt := range p.PublicEvents() {
		if _, err := e.registry.TypeNameOf(reflectZero(pt)); err != nil {
			return fmt.Errorf("aggregate %q: public event: %w; register it with engine.Message first", t.Name(), err)
		}
	}
	return nil
}

// openProjections opens the read-model store (when projections are
// registered) and declares every projection's queue, before any event
// is published. The returned function stops async rebuilds and closes
// what it opened.
func (e *Engine) openProjections(ctx context.Context) (func(), error) {
	o := e.opts
	e.proj.streamsEnd = make(chan struct{})
	e.proj.bgCtx, e.proj.bgCancel = context.WithCancel(context.WithoutCancel(ctx))
	e.proj.runners = make(map[string]*projection.Runner)
	closeAll := func() {
		e.proj.bgCancel()
		e.proj.bg.Wait()
	}
	e.proj.rm = o.ReadModels
	e.mu.RLock()
	defs := append([]*projection.Projection(nil), e.proj.defs...)
	aggs := make([]aggregate.Type, 0, len(e.aggregates))
	for _, t := range e.aggregates {
		aggs = append(aggs, t)
	}
	e.mu.RUnlock()
	if e.proj.rm == nil && len(defs) > 0 {
		path := filepath.Join(o.DataDir, "readmodels.db")
		rm, err := rmembedded.Open(path)
		if err != nil {
			return nil, err
		}
		e.proj.rm = rm
		closeAll = func() {
			e.proj.bgCancel()
			e.proj.bg.Wait()
			closeLogged(e.logger, "read models", rm.Close)
		}
	}
	sort.Slice(aggs, func(i, j int) bool { return aggs[i].Name() < aggs[j].Name() })
	for _, p := range defs {
		r, err := projection.NewRunner(p, projection.Config{
			Source:     projection.Source{Store: e.deps.Store, Registry: e.registry, Aggregates: aggs},
			ReadModels: e.proj.rm, Transport: e.deps.Transport,
			Partitions: o.Partitions, Prefetch: o.Prefetch, GapWait: o.ProjectionGapWait, RetryDelay: o.RetryDelay,
			OnApplied: func(model, _ string, _ uint64, _ []readmodel.Change) { e.proj.hub.Notify(model) },
			Logger:    e.logger,
		})
		if err == nil {
			err = r.Declare(ctx)
		}
		if err != nil {
			closeAll()
			return nil, err
		}
		e.proj.runners[p.Name()] = r
	}
	return closeAll, nil
}

// runProjections starts every runner in g.
func (e *Engine) runProjections(g *errgroup.Group, ctx context.Context) {
	for _, r := range e.proj.runners {
		g.Go(func() error { return r.Run(ctx) })
	}
}

// endStreams ends the server-sent-event streams (the admin server is
// shutting down).
func (e *Engine) endStreams() {
	e.proj.endOnce.Do(func() {
		if e.proj.streamsEnd != nil {
			close(e.proj.streamsEnd)
		}
	})
}

func (e *Engine) runner(name string) (*projection.Runner, error) {
	if !e.running.Load() {
		return nil, ErrNotRunning
	}
	r, ok := e.proj.runners[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProjection, name)
	}
	return r, nil
}

// Projections returns the status of every registered projection, by name.
func (e *Engine) Projections() ([]projection.Status, error) {
	if !e.running.Load() {
		return nil, ErrNotRunning
	}
	out := make([]projection.Status, 0, len(e.proj.runners))
	for _, r := range e.proj.runners {
		out = append(out, r.Status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ProjectionStatus returns one projection's status.
func (e *Engine) ProjectionStatus(name string) (projection.Status, error) {
	r, err := e.runner(name)
	if err != nil {
		return projection.Status{}, err
	}
	return r.Status(), nil
}

// RebuildProjection drops the projection's read model and rebuilds it
// from the event store, calling progress after each stream; it returns
// when the rebuild is done (see projection.Runner.Rebuild).
func (e *Engine) RebuildProjection(ctx context.Context, name string, progress func(done, total int)) error {
	r, err := e.runner(name)
	if err != nil {
		return err
	}
	return r.Rebuild(ctx, progress)
}

// StartRebuild starts RebuildProjection in the background and returns at
// once; follow it with ProjectionStatus. The engine stops it when it
// stops. A rebuild already running is ErrRebuilding.
func (e *Engine) StartRebuild(name string) error {
	r, err := e.runner(name)
	if err != nil {
		return err
	}
	if st := r.Status(); st.Rebuild != nil && st.Rebuild.Running {
		return fmt.Errorf("projection %s: %w", name, projection.ErrRebuilding)
	}
	started := make(chan struct{})
	e.proj.bg.Add(1)
	go func() {
		defer e.proj.bg.Done()
		err := r.Rebuild(e.proj.bgCtx, func(int, int) {
			select {
			case <-started:
			default:
				close(started)
			}
		})
		select {
		case <-started:
		default:
			close(started)
		}
		if err != nil {
			e.logger.Warn("projection rebuild failed", "projection", name, "err", err)
		}
	}()
	// Return once the rebuild has begun (or failed), so that a status read
	// right after shows it.
	<-started
	return nil
}

// ReadModel returns the document key of read model model.
func (e *Engine) ReadModel(ctx context.Context, model, key string) (readmodel.Doc, error) {
	rm, err := e.readModels(model)
	if err != nil {
		return readmodel.Doc{}, err
	}
	return rm.Get(ctx, model, key)
}

// ListReadModel returns up to limit documents of model after key after.
func (e *Engine) ListReadModel(ctx context.Context, model, after string, limit int) ([]readmodel.Doc, error) {
	rm, err := e.readModels(model)
	if err != nil {
		return nil, err
	}
	return rm.List(ctx, model, after, limit)
}

func (e *Engine) readModels(model string) (readmodel.Store, error) {
	if _, err := e.runner(model); err != nil {
		return nil, err
	}
	return e.proj.rm, nil
}

// MaxReadModelWait bounds WaitForReadModel's timeout.
const MaxReadModelWait = time.Minute

// WaitForReadModel waits until read model model reflects event seq of
// stream (its checkpoint for stream is at least seq), at most timeout
// (capped at MaxReadModelWait); past it the error is ErrNotReached. Use
// it with the Sequence an Execute returned: a query after it sees the
// command's effect (read your writes).
func (e *Engine) WaitForReadModel(ctx context.Context, model, stream string, seq uint64, timeout time.Duration) error {
	rm, err := e.readModels(model)
	if err != nil {
		return err
	}
	timeout = min(max(timeout, 0), MaxReadModelWait)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	signal, unsubscribe := e.proj.hub.Subscribe(model)
	defer unsubscribe()
	// A change made by another engine process is not signalled: look
	// every 250ms as well.
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		cp, err := rm.Checkpoint(ctx, model, stream)
		if err == nil && cp >= seq {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("read model %s: checkpoint of %s: %w", model, stream, err)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%w: %s has stream %s at event %d, not %d, after %v", ErrNotReached, model, stream, cp, seq, timeout)
			}
			return ctx.Err()
		case <-signal:
		case <-tick.C:
		}
	}
}

// CommandResult is what an executed command produced.
type CommandResult struct {
	// MessageID is the command's message ID.
	MessageID string `json:"message_id"`
	// Stream is the aggregate's stream, Version the commit that handled
	// the command.
	Stream  string `json:"stream"`
	Version uint64 `json:"version"`
	// Events is how many events the command recorded (0: rejected, or it
	// changed nothing) and Sequence the stream sequence of the last one
	// (0 when none): wait for it with WaitForReadModel.
	Events   int    `json:"events"`
	Sequence uint64 `json:"sequence"`
}

// Execute sends cmd (a registered struct) to the aggregate key of
// service and waits until the aggregate has committed it (bounded by
// ctx, at most 30s without a deadline). The result names the commit and
// the stream sequence it produced.
func (e *Engine) Execute(ctx context.Context, service, key string, cmd any) (CommandResult, error) {
	e.mu.RLock()
	t, ok := e.aggregates[service]
	e.mu.RUnlock()
	if !ok {
		return CommandResult{}, fmt.Errorf("%w: no aggregate serves %q", ErrInvalidRequest, service)
	}
	if key == "" {
		return CommandResult{}, fmt.Errorf("%w: empty aggregate key", ErrInvalidRequest)
	}
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	env, err := e.Send(ctx, service, key, cmd, nil)
	if err != nil {
		return CommandResult{}, err
	}
	stream := actors.AggregateStream(t.Name(), key)
	wait := time.Millisecond
	for {
		version, ok, err := e.deps.Store.Handled(ctx, stream, env.ID)
		if err != nil && ctx.Err() == nil {
			return CommandResult{}, fmt.Errorf("execute %s on %s: %w", env.Type, stream, err)
		}
		if ok {
			commits, err := e.deps.Store.Load(ctx, stream, version)
			if err != nil || len(commits) == 0 {
				return CommandResult{}, fmt.Errorf("execute %s on %s: load v%d: %v", env.Type, stream, version, err)
			}
			c := commits[0]
			res := CommandResult{MessageID: env.ID, Stream: stream, Version: c.Version, Events: len(c.Events)}
			if n := len(c.Events); n > 0 {
				res.Sequence = c.Events[n-1].Sequence
			}
			return res, nil
		}
		select {
		case <-ctx.Done():
			return CommandResult{}, fmt.Errorf("execute %s on %s: not committed: %w", env.Type, stream, ctx.Err())
		case <-time.After(wait):
			wait = min(2*wait, 50*time.Millisecond)
		}
	}
}
