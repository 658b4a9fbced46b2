package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
	mongostore "github.com/sagaflow/sagaflow/store/mongo"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
)

// Backend names in the results.
const (
	BackendEmbedded    = "embedded"
	BackendDistributed = "rabbitmq+mongodb"
)

// sagaSection runs the saga phases on one backend: for each compensation
// share, full load and then half load. Every phase gets a fresh store,
// transport and engine, with names of its own, so that each starts from an
// empty database and no message of one phase reaches the next (the outbox
// relay may publish a message twice, and a duplicate must not land in the
// next phase's engine).
type sagaSection struct {
	cfg     Config
	backend string
	window  int
	runID   string
	// open opens a fresh store and transport for the services svc.
	open   func(ctx context.Context, svc Services, logger *slog.Logger) (opened, error)
	logger *slog.Logger
}

// run runs every phase.
func (s sagaSection) run(ctx context.Context) []SagaResult {
	var out []SagaResult
	for pi, pct := range s.cfg.Compensation {
		full := phase{
			prefix: fmt.Sprintf("c%d-full-%d", pct, pi), failPct: pct,
			warmup: s.cfg.Warmup, duration: s.cfg.Duration, drain: s.cfg.Drain,
			starters: s.window, window: s.window, // one goroutine per saga in flight
		}
		slog.Info("saga phase", "backend", s.backend, "compensation_percent", pct, "load", "full", "in_flight", s.window)
		fr, err := s.runPhase(ctx, full)
		res := s.result(pct, "full", fr, err)
		res.InFlight = s.window
		out = append(out, res)
		if err != nil {
			continue
		}
		half := full
		half.prefix = fmt.Sprintf("c%d-half-%d", pct, pi)
		half.window = 0
		half.rate = fr.Rate / 2
		half.starters = s.cfg.Starters
		half.maxInFlight = max(4*s.window, 1000)
		if s.backend == BackendEmbedded && pi == 0 {
			half.traceFile = s.cfg.HalfTrace
		}
		slog.Info("saga phase", "backend", s.backend, "compensation_percent", pct, "load", "half", "rate", half.rate)
		hr, err := s.runPhase(ctx, half)
		res = s.result(pct, "half", hr, err)
		res.Offered = half.rate
		out = append(out, res)
	}
	return out
}

// opened is a phase's fresh store and transport.
type opened struct {
	store     store.Store
	transport transport.Transport
	// sample returns the store's running totals (see storeload.go).
	sample func() storeSample
	// close closes both and deletes what the phase created.
	close func()
}

// runPhaseResult is a phase's figures with the engine warnings logged
// while it ran.
type runPhaseResult struct {
	phaseResult
	warnings  int
	firstWarn string
}

// runPhase runs p on a fresh store and engine.
func (s sagaSection) runPhase(ctx context.Context, p phase) (runPhaseResult, error) {
	warns := &warnCounter{}
	logger := slog.New(countingHandler{next: s.logger.Handler(), warns: warns})
	svc := NewServices(s.runID + "-" + p.prefix)
	o, err := s.open(ctx, svc, logger)
	if err != nil {
		return runPhaseResult{}, err
	}
	defer o.close()
	st, tr := o.store, o.transport
	watch := &sagaWatch{}
	observed := &observedStore{Store: st, onSaga: watch.onSaga, sample: o.sample}
	e := Register(engine.New(engine.Options{
		Name: svc.Engine, Store: observed, Transport: tr, Partitions: s.cfg.Partitions,
		IdleTimeout: s.cfg.IdleTimeout, AdminAddr: engine.AdminOff, Logger: logger,
	}), svc, false)
	stopEngine, err := runEngine(ctx, e)
	if err != nil {
		return runPhaseResult{}, err
	}
	defer stopEngine()
	p.eng, p.store = e, observed
	r, err := p.run(ctx, watch)
	n, first := warns.get()
	return runPhaseResult{phaseResult: r, warnings: n, firstWarn: first}, err
}

// result turns a phase's figures into a result.
func (s sagaSection) result(pct int, load string, r runPhaseResult, err error) SagaResult {
	res := SagaResult{Backend: s.backend, CompensationPercent: pct, Load: load, Status: StatusOK}
	res.Warnings = r.warnings
	if r.warnings > 0 {
		res.Note = "engine warnings, the first: " + r.firstWarn
	}
	if err != nil {
		res.Status = failed(err)
		return res
	}
	res.Rate, res.P50, res.P99 = r.Rate, millis(r.P50), millis(r.P99)
	res.P90, res.P999 = millis(r.P90), millis(r.P999)
	res.Sagas, res.Compensated, res.Unfinished, res.Late, res.Cost = r.Sagas, r.Compensated, r.Unfinished, r.Late, r.Cost
	res.Store, res.StealShare, res.CPUPerSaga = r.Store, r.StealShare, millis(r.CPUPerSaga)
	res.AllocKiBPerSaga = r.AllocPerSaga
	res.StartErrors = r.StartErrors
	if r.FirstError != nil {
		res.Note = joinNote("first start error: "+r.FirstError.Error(), res.Note)
	}
	return res
}

// runEngine runs e until the returned stop is called; it returns once e
// is ready.
func runEngine(ctx context.Context, e *engine.Engine) (stop func(), err error) {
	if err := e.Err(); err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(rctx) }()
	stop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				slog.Warn("engine stopped with an error", "err", err)
			}
		case <-time.After(30 * time.Second):
			slog.Warn("engine did not stop within 30s")
		}
	}
	select {
	case <-e.Ready():
		return stop, nil
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("engine stopped before it was ready: %w", err)
	case <-time.After(2 * time.Minute):
		stop()
		return nil, errors.New("engine not ready within 2m")
	}
}

// runEmbeddedSagas runs the saga phases on the embedded default: the
// embedded store in a fresh directory and the in-process transport,
// opened exactly as the engine opens them for Options.DataDir (the
// harness opens them itself to observe the store).
func runEmbeddedSagas(ctx context.Context, cfg Config, runID string) []SagaResult {
	s := sagaSection{
		cfg: cfg, backend: BackendEmbedded, window: cfg.WindowEmbedded, runID: runID, logger: engineLogger(cfg.Verbose),
		open: func(ctx context.Context, _ Services, logger *slog.Logger) (opened, error) {
			dir, err := os.MkdirTemp("", "sagaflow-bench-embedded-")
			if err != nil {
				return opened{}, fmt.Errorf("embedded store: %w", err)
			}
			st, err := embedded.Open(ctx, dir, embedded.WithLogger(logger))
			if err != nil {
				_ = os.RemoveAll(dir)
				return opened{}, fmt.Errorf("open embedded store in %s: %w", dir, err)
			}
			tr := inmem.New(inmem.WithPartitions(cfg.Partitions), inmem.WithLogger(logger))
			return opened{store: st, transport: tr, sample: embeddedSampler(st), close: func() {
				closeWarn("in-process transport", tr.Close)
				closeWarn("embedded store", st.Close)
				_ = os.RemoveAll(dir)
			}}, nil
		},
	}
	return s.run(ctx)
}

// runDistributedSagas runs the saga phases on RabbitMQ and MongoDB; each
// phase has RabbitMQ names and a database of its own, deleted after it.
func runDistributedSagas(ctx context.Context, cfg Config, runID, amqpURL, mongoURI string) []SagaResult {
	s := sagaSection{
		cfg: cfg, backend: BackendDistributed, window: cfg.WindowDistributed, runID: runID, logger: engineLogger(cfg.Verbose),
		open: func(ctx context.Context, svc Services, logger *slog.Logger) (opened, error) {
			octx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			tr, err := rabbitmq.Dial(octx, amqpURL, rabbitmq.WithName(svc.Engine), rabbitmq.WithPartitions(cfg.Partitions), rabbitmq.WithLogger(logger))
			if err != nil {
				return opened{}, fmt.Errorf("dial RabbitMQ: %w", err)
			}
			db := strings.ReplaceAll(svc.Engine, "-", "_")
			commands := &commandCounter{}
			st, err := mongostore.Open(octx, mongoURI, mongostore.WithDatabase(db), mongostore.WithLogger(logger),
				mongostore.WithCommandMonitor(commands.Monitor()))
			if err != nil {
				deleteTopology(tr, svc)
				closeWarn("RabbitMQ transport", tr.Close)
				return opened{}, fmt.Errorf("open MongoDB store: %w", err)
			}
			return opened{store: st, transport: tr, sample: commands.sample, close: func() {
				closeWarn("MongoDB store", st.Close)
				dropDatabase(mongoURI, db)
				deleteTopology(tr, svc)
				closeWarn("RabbitMQ transport", tr.Close)
			}}, nil
		},
	}
	return s.run(ctx)
}

// deleteTopology deletes the run's queues and exchanges.
func deleteTopology(tr *rabbitmq.Transport, svc Services) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	queues := append([]string{svc.Engine}, svc.Steps[:]...)
	if err := tr.DeleteTopology(ctx, queues...); err != nil {
		slog.Warn("delete the run's RabbitMQ queues", "err", err)
	}
}

// dropDatabase drops the run's database.
func dropDatabase(uri, db string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := mongostore.DropDatabase(ctx, uri, db); err != nil {
		slog.Warn("drop the run's database", "db", db, "err", err)
	}
}

func closeWarn(what string, f func() error) {
	if err := f(); err != nil {
		slog.Warn("close", "what", what, "err", err)
	}
}
