package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/store/embedded"
	"github.com/sagaflow/sagaflow/transport/inmem"
)

// runMemory runs the memory section in a child process, so that the RSS
// is the engine's alone.
func runMemory(cfg Config, runID string) *MemoryResult {
	dir, err := os.MkdirTemp("", "sagaflow-bench-memory-")
	if err != nil {
		return &MemoryResult{Status: failed(err)}
	}
	defer os.RemoveAll(dir)
	timeout := 10*time.Minute + 2*cfg.MemoryIdle
	c, err := startChild(childMemory, childConfig{
		Dir: dir, RunID: runID, Count: cfg.Actors, Partitions: cfg.Partitions, Idle: cfg.MemoryIdle,
		Timeout: timeout, Verbose: cfg.Verbose, HeapProfile: cfg.MemProfile,
	})
	if err != nil {
		return &MemoryResult{Status: failed(err)}
	}
	defer func() { _ = c.stop() }()
	ev, err := c.await("memory", timeout)
	if err != nil {
		return &MemoryResult{Status: failed(err)}
	}
	if ev.Memory == nil {
		return &MemoryResult{Status: failed(fmt.Errorf("child sent no figures"))}
	}
	return ev.Memory
}

// memoryChild runs an engine on the embedded default with one aggregate
// service, sends one command to each of cfg.Count aggregates (each then
// has an actor that handled one command), and reports the RSS with those
// actors idle and again after they were passivated.
func memoryChild(ctx context.Context, cfg childConfig) error {
	logger, warns := countedLogger(cfg.Verbose)
	st, err := embedded.Open(ctx, cfg.Dir, embedded.WithLogger(logger))
	if err != nil {
		return fmt.Errorf("open embedded store in %s: %w", cfg.Dir, err)
	}
	defer closeWarn("embedded store", st.Close)
	tr := inmem.New(inmem.WithPartitions(cfg.Partitions), inmem.WithLogger(logger))
	defer closeWarn("in-process transport", tr.Close)

	var handled atomic.Int64
	var lastHandled atomic.Int64
	tokens := make(chan struct{}, 2000)
	for range cap(tokens) {
		tokens <- struct{}{}
	}
	observed := &observedStore{Store: st, onAggregate: func(string) {
		handled.Add(1)
		lastHandled.Store(time.Now().UnixNano())
		select {
		case tokens <- struct{}{}:
		default:
		}
	}}
	svc := NewServices(cfg.RunID)
	e := engine.New(engine.Options{
		Name: svc.Engine, Store: observed, Transport: tr, Partitions: cfg.Partitions,
		IdleTimeout: cfg.Idle, AdminAddr: engine.AdminOff, Logger: logger,
	}).Register(Messages()...).Register(Participant(svc.Steps[0], 1))
	stopEngine, err := runEngine(ctx, e)
	if err != nil {
		return err
	}
	defer stopEngine()

	base, err := sampleMemory()
	if err != nil {
		return err
	}
	start := time.Now()
	for i := range cfg.Count {
		select {
		case <-tokens:
		case <-ctx.Done():
			return fmt.Errorf("sending command %d of %d: %w", i, cfg.Count, ctx.Err())
		}
		if _, err := e.Send(ctx, svc.Steps[0], fmt.Sprintf("mem-%07d", i), &DoStep{Step: 1}, nil); err != nil {
			return fmt.Errorf("send command %d: %w", i, err)
		}
	}
	if !pollUntil(ctx, 5*time.Millisecond, func() bool { return handled.Load() >= int64(cfg.Count) }) {
		return fmt.Errorf("only %d of %d commands handled: %w", handled.Load(), cfg.Count, ctx.Err())
	}
	send := time.Since(start)
	idle, err := sampleMemory()
	if err != nil {
		return err
	}
	if err := writeHeapProfile(cfg.HeapProfile, "idle"); err != nil {
		return err
	}

	res := &MemoryResult{
		Status: StatusOK, Actors: cfg.Count,
		BaselineRSS: mib(base.RSS), BaselineAnon: mib(base.Anon), BaselineFile: mib(base.File), BaselineHeap: mib(base.Heap),
		IdleRSS: mib(idle.RSS), IdleAnon: mib(idle.Anon), IdleFile: mib(idle.File), IdleHeap: mib(idle.Heap),
		IdleStacks:  mib(idle.Stacks),
		SendSeconds: send.Seconds(),
	}
	if cfg.Count > 0 && idle.Anon > base.Anon {
		res.AnonPerActor = float64(idle.Anon-base.Anon) / float64(cfg.Count)
	}
	stats := st.Stats()
	res.IdleStoreCache, res.IdleStoreMemTables = mib(stats.CacheBytes), mib(stats.MemTableBytes)
	if size, err := dirSize(st.Path()); err == nil {
		res.StoreFile = mib(size)
	}
	if send > cfg.Idle {
		res.Note = fmt.Sprintf("sending took %.1fs, longer than the %v idle timeout: some actors may have been passivated before the idle figure", send.Seconds(), cfg.Idle)
	}
	// The routers look every idle/2 and stop actors idle for the idle
	// timeout: wait for the tick after the last actor became eligible.
	due := time.Unix(0, lastHandled.Load()).Add(cfg.Idle + cfg.Idle/2 + time.Second)
	select {
	case <-time.After(time.Until(due)):
	case <-ctx.Done():
		return fmt.Errorf("waiting for passivation: %w", ctx.Err())
	}
	pass, err := sampleMemory()
	if err != nil {
		return err
	}
	if err := writeHeapProfile(cfg.HeapProfile, "passivated"); err != nil {
		return err
	}
	res.PassivatedRSS, res.PassivatedAnon, res.PassivatedHeap = mib(pass.RSS), mib(pass.Anon), mib(pass.Heap)
	res.PassivatedFile = mib(pass.File)

	// Check that passivation happened: send a second command to a sample
	// of the aggregates. An actor that was passivated loads its stream
	// again; one that stayed alive does not.
	sample := min(cfg.Count, 1000)
	loadsBefore, handledBefore := observed.counts.loads.Load(), handled.Load()
	for k := range sample {
		i := k * cfg.Count / sample
		if _, err := e.Send(ctx, svc.Steps[0], fmt.Sprintf("mem-%07d", i), &DoStep{Step: 1}, nil); err != nil {
			return fmt.Errorf("send second command %d: %w", i, err)
		}
	}
	if !pollUntil(ctx, 5*time.Millisecond, func() bool { return handled.Load() >= handledBefore+int64(sample) }) {
		return fmt.Errorf("second commands: only %d of %d handled: %w", handled.Load()-handledBefore, sample, ctx.Err())
	}
	res.Sampled, res.SampledPassivated = sample, int(observed.counts.loads.Load()-loadsBefore)
	if n, first := warns.get(); n > 0 {
		res.Note = joinNote(res.Note, fmt.Sprintf("the engine logged %d warnings, the first: %s", n, first))
	}
	emit(childEvent{Event: "memory", Memory: res})
	return nil
}

// writeHeapProfile writes the heap profile to prefix-name.pprof, if a
// prefix is given.
func writeHeapProfile(prefix, name string) error {
	if prefix == "" {
		return nil
	}
	return writeProfile("heap", prefix+"-"+name+".pprof")
}

// writeProfile writes the runtime profile named profile to path.
func writeProfile(profile, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("%s profile: %w", profile, err)
	}
	if err := pprof.Lookup(profile).WriteTo(f, 0); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s profile %s: %w", profile, path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s profile %s: %w", profile, path, err)
	}
	return nil
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// dirSize is the total size of the files under dir.
func dirSize(dir string) (uint64, error) {
	var total uint64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += uint64(info.Size())
		return nil
	})
	return total, err
}
