package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/readmodel"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/transport"
)

// Defaults of Config.
const (
	// DefaultGapWait is how long an event ahead of a missing one is held
	// before the missing one is taken from the event store (or the held
	// events are parked).
	DefaultGapWait = 5 * time.Second
	// DefaultMaxHeld bounds the events one partition worker holds.
	DefaultMaxHeld = 256
	// QueuePrefix starts the name of a projection's queue.
	QueuePrefix = "projection."
)

// Config is what a Runner needs.
type Config struct {
	// Source is the local event store (gap filling and Rebuild).
	Source Source
	// ReadModels keeps the read model.
	ReadModels readmodel.Store
	// Transport delivers the events.
	Transport transport.Transport
	// Partitions and Prefetch are the queue's (defaults 16 and 64).
	Partitions, Prefetch int
	// GapWait and MaxHeld: see DefaultGapWait and DefaultMaxHeld.
	GapWait time.Duration
	MaxHeld int
	// RetryDelay is how long an event waits before it is delivered again
	// after a store error (default 1s).
	RetryDelay time.Duration
	// OnApplied, when set, is called after each event is applied, with the
	// changes it made (none for an event that changed no document).
	OnApplied func(model, stream string, seq uint64, changes []readmodel.Change)
	// Logger receives the runner's logs (default slog.Default()).
	Logger *slog.Logger
}

// Status is a projection's state, for operators.
type Status struct {
	Name   string   `json:"name"`
	Queue  string   `json:"queue"`
	Events []string `json:"events"`
	// State is "running", "rebuilding" or "stopped".
	State string `json:"state"`
	// Applied, Skipped, Duplicates, Parked and Held count events since
	// start: applied by a handler; passed over because they are not
	// published or not handled here (only the checkpoint moved); dropped
	// as already applied; dead-lettered (counted once the transport holds
	// the dead letter); held now.
	Applied    uint64 `json:"applied"`
	Skipped    uint64 `json:"skipped"`
	Duplicates uint64 `json:"duplicates"`
	Parked     uint64 `json:"parked"`
	Held       int64  `json:"held"`
	// Rebuild is the latest rebuild, if any.
	Rebuild *RebuildStatus `json:"rebuild,omitempty"`
}

// RebuildStatus is the progress of a rebuild.
type RebuildStatus struct {
	Running    bool      `json:"running"`
	Done       int       `json:"streams_done"`
	Total      int       `json:"streams_total"`
	Events     uint64    `json:"events"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Error      string    `json:"error,omitempty"`
}

// ErrRebuilding: a rebuild of the projection is already running.
var ErrRebuilding = errors.New("projection is being rebuilt")

// Runner runs one projection: it consumes the projection's queue and
// applies each event in stream order (see the package doc), and rebuilds
// the read model on request.
type Runner struct {
	p     *Projection
	cfg   Config
	queue string
	types []string
	log   *slog.Logger

	// applyMu is held for reading while a worker applies an event and
	// for writing by Rebuild, so a rebuild runs alone.
	applyMu sync.RWMutex
	running atomic.Bool

	applied, skipped, duplicates, parked atomic.Uint64
	held                                 atomic.Int64

	rebuildMu sync.Mutex
	rebuild   *RebuildStatus
}

// NewRunner returns the runner of p. Every event type p handles must be
// registered in cfg.Source.Registry.
func NewRunner(p *Projection, cfg Config) (*Runner, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = transport.DefaultPartitions
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 64
	}
	if cfg.GapWait <= 0 {
		cfg.GapWait = DefaultGapWait
	}
	if cfg.MaxHeld <= 0 {
		cfg.MaxHeld = DefaultMaxHeld
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReadModels == nil || cfg.Transport == nil || cfg.Source.Registry == nil {
		return nil, fmt.Errorf("projection %s: config needs ReadModels, Transport and Source.Registry", p.name)
	}
	r := &Runner{p: p, cfg: cfg, queue: QueuePrefix + p.name, log: cfg.Logger.With("projection", p.name)}
	for _, t := range p.order {
		name, err := cfg.Source.Registry.TypeNameOf(reflectNew(t))
		if err != nil {
			return nil, fmt.Errorf("projection %s: %w; register it with engine.Message first", p.name, err)
		}
		r.types = append(r.types, name)
	}
	return r, nil
}

// Projection returns the runner's projection.
func (r *Runner) Projection() *Projection { return r.p }

// Declare makes the projection's queue exist, subscribed to its events.
// Events published before it exists do not reach it (Rebuild does).
func (r *Runner) Declare(ctx context.Context) error {
	if err := r.cfg.Transport.Declare(ctx, transport.Queue{Name: r.queue, Events: r.types}); err != nil {
		return fmt.Errorf("projection %s: declare queue %s: %w", r.p.name, r.queue, err)
	}
	return nil
}

// Run consumes the projection's queue until ctx is done, one worker per
// partition; it waits for its workers before it returns.
func (r *Runner) Run(ctx context.Context) error {
	if err := r.Declare(ctx); err != nil {
		return err
	}
	r.running.Store(true)
	defer r.running.Store(false)
	g, gctx := errgroup.WithContext(ctx)
	workers := make([]*worker, r.cfg.Partitions)
	for i := range workers {
		workers[i] = &worker{r: r, in: make(chan transport.Delivery, r.cfg.Prefetch+1), holds: make(map[string]*hold)}
		w := workers[i]
		g.Go(func() error { w.run(gctx); return nil })
	}
	g.Go(func() error {
		err := r.cfg.Transport.Consume(gctx, r.queue, r.cfg.Prefetch, func(_ context.Context, d transport.Delivery) {
			p := d.Partition()
			if p < 0 || p >= len(workers) {
				r.settle(func(ctx context.Context) error {
					return d.Requeue(ctx, fmt.Errorf("partition %d outside 0..%d", p, len(workers)-1))
				})
				return
			}
			// Never blocks: the transport keeps at most Prefetch
			// deliveries of a partition unsettled.
			workers[p].in <- d
		})
		if err != nil {
			return fmt.Errorf("projection %s: consume: %w", r.p.name, err)
		}
		return nil
	})
	return g.Wait()
}

// Status reports the projection's counters and latest rebuild.
func (r *Runner) Status() Status {
	st := Status{Name: r.p.name, Queue: r.queue, Events: append([]string(nil), r.types...), State: "stopped",
		Applied: r.applied.Load(), Skipped: r.skipped.Load(), Duplicates: r.duplicates.Load(), Parked: r.parked.Load(), Held: r.held.Load()}
	if r.running.Load() {
		st.State = "running"
	}
	r.rebuildMu.Lock()
	if r.rebuild != nil {
		rb := *r.rebuild
		st.Rebuild = &rb
		if rb.Running {
			st.State = "rebuilding"
		}
	}
	r.rebuildMu.Unlock()
	return st
}

// settle runs a settle call with a bounded context, logging a failure.
func (r *Runner) settle(f func(ctx context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f(ctx); err != nil {
		r.log.Warn("settle failed; the event will be delivered again", "err", err)
	}
}

// apply applies one event under the rebuild lock and reports it.
func (r *Runner) apply(ctx context.Context, stream string, env message.Envelope, event any) (readmodel.Result, error) {
	r.applyMu.RLock()
	defer r.applyMu.RUnlock()
	return r.applyLocked(ctx, stream, env, event)
}

func (r *Runner) applyLocked(ctx context.Context, stream string, env message.Envelope, event any) (readmodel.Result, error) {
	res, err := r.p.Apply(ctx, r.cfg.ReadModels, stream, env, event)
	if err != nil {
		return res, err
	}
	if !res.Applied {
		r.duplicates.Add(1)
		return res, nil
	}
	if event == nil {
		r.skipped.Add(1)
	} else {
		r.applied.Add(1)
	}
	if r.cfg.OnApplied != nil {
		r.cfg.OnApplied(r.p.name, stream, env.Sequence, res.Changes)
	}
	return res, nil
}

// Rebuild drops the read model and replays, from the event store, every
// stream of every local aggregate that publishes an event the projection
// handles, stream by stream in name order and each in sequence order.
// Live events wait while it runs. progress, when set, is called after
// each stream with the streams done and the total.
func (r *Runner) Rebuild(ctx context.Context, progress func(done, total int)) error {
	r.rebuildMu.Lock()
	if r.rebuild != nil && r.rebuild.Running {
		r.rebuildMu.Unlock()
		return fmt.Errorf("projection %s: %w", r.p.name, ErrRebuilding)
	}
	st := &RebuildStatus{Running: true, StartedAt: time.Now().UTC()}
	r.rebuild = st
	r.rebuildMu.Unlock()
	err := r.doRebuild(ctx, func(done, total int, events uint64) {
		r.rebuildMu.Lock()
		st.Done, st.Total, st.Events = done, total, events
		r.rebuildMu.Unlock()
		if progress != nil {
			progress(done, total)
		}
	})
	r.rebuildMu.Lock()
	st.Running, st.FinishedAt = false, time.Now().UTC()
	if err != nil {
		st.Error = err.Error()
	}
	r.rebuildMu.Unlock()
	return err
}

// maxRebuildStreams bounds the streams one rebuild replays.
const maxRebuildStreams = 10_000_000

func (r *Runner) doRebuild(ctx context.Context, progress func(done, total int, events uint64)) error {
	streams, err := r.rebuildStreams(ctx)
	if err != nil {
		return err
	}
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	r.log.Info("rebuilding read model", "streams", len(streams))
	if err := r.cfg.ReadModels.Drop(ctx, r.p.name); err != nil {
		return fmt.Errorf("projection %s: rebuild: %w", r.p.name, err)
	}
	progress(0, len(streams), 0)
	var events uint64
	for i, stream := range streams {
		evs, _, err := r.cfg.Source.events(ctx, stream, 1, ^uint64(0))
		if err != nil {
			return fmt.Errorf("projection %s: rebuild %s: %w", r.p.name, stream, err)
		}
		for _, se := range evs {
			env, event := skipEnvelope(stream, se.seq), any(nil)
			if se.published && r.p.Handles(se.event) {
				env, event = se.env, se.event
			}
			if _, err := r.applyLocked(ctx, stream, env, event); err != nil {
				return fmt.Errorf("projection %s: rebuild %s: %w", r.p.name, stream, err)
			}
			events++
		}
		progress(i+1, len(streams), events)
	}
	r.log.Info("rebuilt read model", "streams", len(streams), "events", events)
	return nil
}

// rebuildStreams lists the local streams whose aggregate publishes an
// event type the projection handles.
func (r *Runner) rebuildStreams(ctx context.Context) ([]string, error) {
	src := r.cfg.Source
	if src.Store == nil {
		return nil, fmt.Errorf("projection %s: rebuild needs the event store", r.p.name)
	}
	var streams []string
	for _, t := range src.Aggregates {
		if !r.followsAggregate(t) {
			continue
		}
		after := ""
		for len(streams) < maxRebuildStreams {
			page, err := src.Store.List(ctx, store.ListFilter{Kind: "aggregate", Type: t.Name(), After: after, Limit: 1000})
			if err != nil {
				return nil, fmt.Errorf("projection %s: list %s streams: %w", r.p.name, t.Name(), err)
			}
			for _, info := range page {
				streams = append(streams, info.Stream)
			}
			if len(page) < 1000 {
				break
			}
			after = page[len(page)-1].Stream
		}
	}
	sort.Strings(streams)
	return streams, nil
}

// skipEnvelope stands for an event the projection does not handle: it
// only moves the checkpoint.
func skipEnvelope(stream string, seq uint64) message.Envelope {
	return message.Envelope{Key: stream, Sequence: seq}
}
