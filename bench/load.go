package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/trace"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/workflows"
)

// phase is one saga measurement: a warm-up, a window whose starts and
// finishes are counted, and a drain of what is still in flight.
type phase struct {
	eng      *engine.Engine
	store    *observedStore
	prefix   string // saga IDs are prefix-<n>, unique per phase
	failPct  int
	warmup   time.Duration
	duration time.Duration
	drain    time.Duration
	starters int
	// window > 0: closed loop with window sagas in flight (full load);
	// otherwise rate > 0: open loop at rate starts/s (half load).
	window int
	rate   float64
	// maxInFlight bounds the open loop: starts beyond it are skipped and
	// counted as late.
	maxInFlight int
	// traceFile, if set, gets an execution trace of the window.
	traceFile string
}

// phaseResult is what a phase measured.
type phaseResult struct {
	Rate        float64
	P50, P99    time.Duration
	P90, P999   time.Duration
	Sagas       int // started in the window
	Compensated int // of those
	Unfinished  int // of all started, after the drain
	Late        int
	StartErrors int
	FirstError  error
	Cost        Cost
	Store       *StoreLoad
	StealShare  float64       // of the window
	CPUPerSaga  time.Duration // the process's CPU time in the window per saga finished in it
	// AllocPerSaga is the KiB the process allocated in the window per
	// saga finished in it.
	AllocPerSaga float64
}

// maxStartErrors ends a phase whose starts keep failing.
const maxStartErrors = 1000

// tracker follows one phase's sagas from their start to their end.
type tracker struct {
	from, to time.Time // the measurement window
	tokens   chan struct{}

	mu          sync.Mutex
	starts      map[string]time.Time
	latencies   []time.Duration // of sagas started in the window
	inWindow    int             // sagas started in the window
	compensated int             // of those, compensated
	finishedIn  int             // sagas finished in the window
	inFlight    atomic.Int64
}

func (t *tracker) start(id string, at time.Time) {
	t.inFlight.Add(1)
	t.mu.Lock()
	t.starts[id] = at
	if !at.Before(t.from) && at.Before(t.to) {
		t.inWindow++
	}
	t.mu.Unlock()
}

// forget undoes start for a saga whose start failed.
func (t *tracker) forget(id string) {
	t.mu.Lock()
	if at, ok := t.starts[id]; ok {
		delete(t.starts, id)
		if !at.Before(t.from) && at.Before(t.to) {
			t.inWindow--
		}
		t.inFlight.Add(-1)
	}
	t.mu.Unlock()
	t.release()
}

func (t *tracker) finish(id string, st workflows.Status, at time.Time) {
	t.mu.Lock()
	began, ok := t.starts[id]
	if ok {
		delete(t.starts, id)
		if !at.Before(t.from) && at.Before(t.to) {
			t.finishedIn++
		}
		if !began.Before(t.from) && began.Before(t.to) {
			t.latencies = append(t.latencies, at.Sub(began))
			if st == workflows.StatusCompensated {
				t.compensated++
			}
		}
	}
	t.mu.Unlock()
	if ok {
		t.inFlight.Add(-1)
		t.release()
	}
}

func (t *tracker) release() {
	if t.tokens != nil {
		select {
		case t.tokens <- struct{}{}:
		default:
		}
	}
}

// sagaWatch routes the observed store's saga commits to the running
// phase's tracker.
type sagaWatch struct{ cur atomic.Pointer[tracker] }

func (w *sagaWatch) onSaga(id string, _ uint64, st workflows.Status) {
	if !finished(st) {
		return
	}
	if t := w.cur.Load(); t != nil {
		t.finish(id, st, time.Now())
	}
}

// run runs the phase on eng, whose observed store reports to watch.
func (p phase) run(ctx context.Context, watch *sagaWatch) (phaseResult, error) {
	t0 := time.Now()
	t := &tracker{from: t0.Add(p.warmup), to: t0.Add(p.warmup + p.duration), starts: make(map[string]time.Time)}
	if p.window > 0 {
		t.tokens = make(chan struct{}, p.window)
		for range p.window {
			t.tokens <- struct{}{}
		}
	}
	watch.cur.Store(t)
	defer watch.cur.Store(nil)
	before := p.store.counts.snapshot()
	storeBefore := p.store.sampleStore()

	var (
		next      atomic.Int64
		late      atomic.Int64
		startErrs atomic.Int64
		firstErr  atomic.Pointer[error]
		total     atomic.Int64
		wg        sync.WaitGroup
	)
	stop := t.to
	runCtx, cancel := context.WithDeadline(ctx, stop.Add(p.drain))
	defer cancel()
	window := p.sampleWindow(runCtx, t.from, t.to)
	if p.traceFile != "" {
		traceDone, err := traceWindow(runCtx, p.traceFile, t.from, t.to)
		if err != nil {
			return phaseResult{}, err
		}
		defer func() { <-traceDone }()
	}
	startOne := func(n int64, at time.Time) {
		id := fmt.Sprintf("%s-%d", p.prefix, n)
		in, _ := json.Marshal(Input{ID: id, Fail: fails(n, p.failPct)})
		t.start(id, at)
		sctx, scancel := context.WithTimeout(runCtx, 30*time.Second)
		_, err := p.eng.StartSaga(sctx, engine.StartRequest{Workflow: WorkflowName, ID: id, Input: in})
		scancel()
		if err != nil {
			t.forget(id)
			if runCtx.Err() == nil {
				startErrs.Add(1)
				firstErr.CompareAndSwap(nil, &err)
			}
			return
		}
		total.Add(1)
	}
	stopCh := make(chan struct{})
	stopTimer := time.AfterFunc(time.Until(stop), func() { close(stopCh) })
	defer stopTimer.Stop()
	for range p.starters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for startErrs.Load() < maxStartErrors && runCtx.Err() == nil {
				if p.window > 0 { // closed loop: a token per saga in flight
					select {
					case <-t.tokens:
					case <-stopCh:
						return
					case <-runCtx.Done():
						return
					}
					startOne(next.Add(1), time.Now())
					continue
				}
				// Open loop: saga n is due at t0 + n/rate, whatever the
				// engine's progress (no coordinated omission: latency is
				// measured from when it was due).
				n := next.Add(1) - 1
				at := t0.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
				if !at.Before(stop) {
					return
				}
				if d := time.Until(at); d > 0 {
					timer := time.NewTimer(d)
					select {
					case <-timer.C:
					case <-runCtx.Done():
						timer.Stop()
						return
					}
				}
				if t.inFlight.Load() >= int64(p.maxInFlight) {
					late.Add(1) // skipped: too many in flight
					continue
				}
				if time.Since(at) > time.Second {
					late.Add(1)
				}
				startOne(n, at)
			}
		}()
	}
	wg.Wait()
	if n := startErrs.Load(); n >= maxStartErrors {
		return phaseResult{}, fmt.Errorf("%d sagas failed to start, the first: %w", n, *firstErr.Load())
	}
	// Drain what is in flight, bounded by the phase context's deadline.
	pollUntil(runCtx, 10*time.Millisecond, func() bool { return t.inFlight.Load() == 0 })
	if err := ctx.Err(); err != nil {
		return phaseResult{}, err
	}
	after := p.store.counts.snapshot()
	storeAfter := p.store.sampleStore()
	var winFrom, winTo *storeSample
	if w, ok := <-window; ok { // closed without samples when not sampled
		winFrom, winTo = w[0], w[1]
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	lat := slices.Clone(t.latencies)
	slices.Sort(lat)
	unfinished := len(t.starts)
	res := phaseResult{
		Rate:        float64(t.finishedIn) / p.duration.Seconds(),
		P50:         percentile(lat, 0.50),
		P99:         percentile(lat, 0.99),
		P90:         percentile(lat, 0.90),
		P999:        percentile(lat, 0.999),
		Sagas:       t.inWindow,
		Compensated: t.compensated,
		Unfinished:  unfinished,
		Late:        int(late.Load()),
		StartErrors: int(startErrs.Load()),
		Cost:        costPer(before, after, int(total.Load())-unfinished),
		Store:       storeLoad(storeBefore, winFrom, winTo, storeAfter, int(total.Load())-unfinished, t.finishedIn),
	}
	if winFrom != nil && winTo != nil {
		res.StealShare = stealShare(winFrom.cpu, winTo.cpu)
		if t.finishedIn > 0 {
			res.CPUPerSaga = (winTo.process - winFrom.process) / time.Duration(t.finishedIn)
			res.AllocPerSaga = float64(winTo.allocated-winFrom.allocated) / 1024 / float64(t.finishedIn)
		}
	}
	if p := firstErr.Load(); p != nil {
		res.FirstError = *p
	}
	if res.Sagas == 0 {
		return res, errors.New("no saga started in the measurement window")
	}
	return res, nil
}

// sampleWindow samples the store at from and at to and sends the two
// samples once it has both. It closes the channel without sending when
// the store is not sampled or ctx ends first.
func (p phase) sampleWindow(ctx context.Context, from, to time.Time) <-chan [2]*storeSample {
	out := make(chan [2]*storeSample, 1)
	if p.store.sample == nil {
		close(out)
		return out
	}
	go func() {
		defer close(out)
		var got [2]*storeSample
		for i, at := range []time.Time{from, to} {
			if !sleepUntil(ctx, at) {
				return
			}
			got[i] = p.store.sampleStore()
		}
		out <- got
	}()
	return out
}

// fails spreads the failing sagas evenly: pct of every 100 consecutive
// sagas fail.
func fails(n int64, pct int) bool {
	return (n*37)%100 < int64(pct)
}

// percentile returns the p-quantile (nearest rank) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// pollUntil checks cond every interval until it holds or ctx is done; it
// reports whether cond held.
func pollUntil(ctx context.Context, interval time.Duration, cond func() bool) bool {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return cond()
		case <-tick.C:
		}
	}
	return true
}

// traceWindow writes an execution trace of the window [from, to) to path,
// from a goroutine of its own; the channel it returns is closed when the
// trace is written (or ctx ended it early).
func traceWindow(ctx context.Context, path string, from, to time.Time) (<-chan struct{}, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create trace file: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.Close()
		if !sleepUntil(ctx, from) {
			return
		}
		if err := trace.Start(f); err != nil {
			slog.Warn("execution trace not taken", "err", err)
			return
		}
		sleepUntil(ctx, to)
		trace.Stop()
	}()
	return done, nil
}

// sleepUntil waits until t or until ctx is done; it reports whether t came.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
