package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/workflows"
)

// recoveryFailPct is the share of the recovery section's sagas that are
// compensated after the restart.
const recoveryFailPct = 20

// runRecovery kills an engine with cfg.RecoverySagas sagas in flight and
// times its restart. The first child starts the sagas with its
// participants held back (their services have no consumer, like services
// that are down or backlogged), so that at the kill every saga has sent
// its first command and waits for the reply. The second child is the
// restart on the same data, with the participants.
func runRecovery(cfg Config, runID string) *RecoveryResult {
	res := &RecoveryResult{Status: StatusOK}
	dir, err := os.MkdirTemp("", "sagaflow-bench-recovery-")
	if err != nil {
		res.Status = failed(err)
		return res
	}
	defer os.RemoveAll(dir)
	cc := childConfig{
		Dir: dir, RunID: runID, Count: cfg.RecoverySagas, Partitions: cfg.Partitions,
		Idle: cfg.IdleTimeout, Timeout: cfg.RecoveryTimeout + 5*time.Minute, Verbose: cfg.Verbose,
	}
	first, err := startChild(childRecoveryHold, cc)
	if err != nil {
		res.Status = failed(err)
		return res
	}
	_, err = first.await("inflight", cfg.RecoveryTimeout)
	first.kill()
	if err != nil {
		res.Status = failed(fmt.Errorf("first engine: %w", err))
		return res
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	n, err := countUnfinished(ctx, dir)
	cancel()
	if err != nil {
		res.Status = failed(err)
		return res
	}
	res.InFlight = n
	if n == 0 {
		res.Status = failed(errors.New("no saga was in flight at the kill"))
		return res
	}

	cc.Count = n
	restart := time.Now()
	second, err := startChild(childRecoveryResume, cc)
	if err != nil {
		res.Status = failed(err)
		return res
	}
	defer func() { _ = second.stop() }()
	for _, step := range []struct {
		event string
		out   *float64
	}{{"ready", &res.ReadySeconds}, {"running", &res.RunningSeconds}, {"terminal", &res.TerminalSeconds}} {
		ev, err := second.await(step.event, cfg.RecoveryTimeout)
		if err != nil {
			res.Status = failed(fmt.Errorf("restarted engine: %w", err))
			return res
		}
		*step.out = ev.at.Sub(restart).Seconds()
		if step.event == "terminal" {
			res.Finished, res.Compensated = ev.Count, ev.Compensated
		}
	}
	return res
}

// countUnfinished counts the running and compensating sagas in the
// embedded store in dir.
func countUnfinished(ctx context.Context, dir string) (int, error) {
	st, err := embedded.Open(ctx, dir)
	if err != nil {
		return 0, fmt.Errorf("open the killed engine's store: %w", err)
	}
	defer closeWarn("embedded store", st.Close)
	n, after := 0, ""
	for range 1000 { // bounded: 10 million sagas
		page, err := st.List(ctx, store.ListFilter{
			Kind: "saga", Status: []string{string(workflows.StatusRunning), string(workflows.StatusCompensating)},
			After: after, Limit: 10000,
		})
		if err != nil {
			return 0, fmt.Errorf("list unfinished sagas: %w", err)
		}
		n += len(page)
		if len(page) < 10000 {
			return n, nil
		}
		after = page[len(page)-1].Stream
	}
	return n, errors.New("more than 10 million unfinished sagas")
}

// recoveryEngine opens the recovery children's engine on the embedded
// store in cfg.Dir (as Options.DataDir would), observed.
func recoveryEngine(ctx context.Context, cfg childConfig, observed *observedStore, withoutParticipants bool) (*engine.Engine, func(), error) {
	logger, _ := countedLogger(cfg.Verbose)
	st, err := embedded.Open(ctx, cfg.Dir, embedded.WithLogger(logger))
	if err != nil {
		return nil, nil, fmt.Errorf("open embedded store in %s: %w", cfg.Dir, err)
	}
	observed.Store = st
	tr := inmem.New(inmem.WithPartitions(cfg.Partitions), inmem.WithLogger(logger))
	svc := NewServices(cfg.RunID)
	if withoutParticipants {
		// The participants' queues exist (so the commands are taken) but
		// nobody consumes them.
		for _, s := range svc.Steps {
			if err := tr.Declare(ctx, transport.Queue{Name: s}); err != nil {
				return nil, nil, fmt.Errorf("declare %s: %w", s, err)
			}
		}
	}
	e := Register(engine.New(engine.Options{
		Name: svc.Engine, Store: observed, Transport: tr, Partitions: cfg.Partitions,
		IdleTimeout: cfg.Idle, AdminAddr: engine.AdminOff, Logger: logger,
	}), svc, withoutParticipants)
	cleanup := func() {
		closeWarn("in-process transport", tr.Close)
		closeWarn("embedded store", st.Close)
	}
	return e, cleanup, nil
}

// recoveryHoldChild starts cfg.Count sagas and reports "inflight" once
// every one of them has sent its first command; then it waits to be
// killed.
func recoveryHoldChild(ctx context.Context, cfg childConfig) error {
	var sent atomic.Int64
	all := make(chan struct{})
	var once sync.Once
	observed := &observedStore{onSaga: func(_ string, version uint64, _ workflows.Status) {
		// v1 is the start, which takes the first step: it sends the
		// step's command.
		if version == 1 && sent.Add(1) == int64(cfg.Count) {
			once.Do(func() { close(all) })
		}
	}}
	e, cleanup, err := recoveryEngine(ctx, cfg, observed, true)
	if err != nil {
		return err
	}
	defer cleanup()
	stopEngine, err := runEngine(ctx, e)
	if err != nil {
		return err
	}
	defer stopEngine()

	work := make(chan int, 256)
	var wg sync.WaitGroup
	var startErr atomic.Pointer[error]
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				id := fmt.Sprintf("rec-%06d", i)
				in, _ := json.Marshal(Input{ID: id, Fail: fails(int64(i), recoveryFailPct)})
				if _, err := e.StartSaga(ctx, engine.StartRequest{Workflow: WorkflowName, ID: id, Input: in}); err != nil {
					startErr.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	for i := range cfg.Count {
		if startErr.Load() != nil || ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	if p := startErr.Load(); p != nil {
		return fmt.Errorf("start saga: %w", *p)
	}
	select {
	case <-all:
	case <-ctx.Done():
		return fmt.Errorf("only %d of %d sagas sent their first command: %w", sent.Load(), cfg.Count, ctx.Err())
	}
	emit(childEvent{Event: "inflight", Count: int(sent.Load())})
	<-ctx.Done() // the parent kills us
	return nil
}

// recoveryResumeChild is the restart: it reports "ready" when the engine
// is, "running" once every unfinished saga committed a step again, and
// "terminal" once every one finished.
func recoveryResumeChild(ctx context.Context, cfg childConfig) error {
	var (
		mu          sync.Mutex
		seen        = make(map[string]bool, cfg.Count)
		running     = make(chan struct{})
		terminal    = make(chan struct{})
		done        int
		compensated int
	)
	observed := &observedStore{onSaga: func(id string, _ uint64, st workflows.Status) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := seen[id]; !ok {
			seen[id] = false
			if len(seen) == cfg.Count {
				close(running)
			}
		}
		if finished(st) && !seen[id] {
			seen[id] = true
			done++
			if st == workflows.StatusCompensated {
				compensated++
			}
			if done == cfg.Count {
				close(terminal)
			}
		}
	}}
	e, cleanup, err := recoveryEngine(ctx, cfg, observed, false)
	if err != nil {
		return err
	}
	defer cleanup()
	stopEngine, err := runEngine(ctx, e)
	if err != nil {
		return err
	}
	defer stopEngine()
	emit(childEvent{Event: "ready"})
	for _, w := range []struct {
		name string
		ch   chan struct{}
	}{{"running", running}, {"terminal", terminal}} {
		select {
		case <-w.ch:
		case <-ctx.Done():
			mu.Lock()
			n, d := len(seen), done
			mu.Unlock()
			return fmt.Errorf("waiting for %s: %d sagas committed again, %d finished, of %d: %w", w.name, n, d, cfg.Count, ctx.Err())
		}
		mu.Lock()
		ev := childEvent{Event: w.name, Count: len(seen)}
		if w.name == "terminal" {
			ev.Count, ev.Compensated = done, compensated
		}
		mu.Unlock()
		emit(ev)
	}
	return nil
}
