package main

import (
	"context"
	"runtime/metrics"
	"strings"
	"sync/atomic"

	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/workflows"
)

// observedStore wraps the engine's store to see what the engine does
// without changing it: it counts appends, messages and outbox marks, and
// reports each saga commit, so the harness learns when a saga finished at
// the moment its last commit was durable, without polling.
type observedStore struct {
	store.Store
	// onSaga, when set, is called after every successful saga commit with
	// the saga's ID, the commit's version and status.
	onSaga func(id string, version uint64, status workflows.Status)
	// onAggregate, when set, is called after every successful aggregate
	// commit.
	onAggregate func(stream string)
	// sample, when set, returns the running totals of the store behind
	// (see storeload.go).
	sample func() storeSample

	counts counters
}

// sampleStore samples the store behind, or returns nil.
func (s *observedStore) sampleStore() *storeSample {
	if s.sample == nil {
		return nil
	}
	v := s.sample()
	v.cpu, v.process, v.allocated = readCPUTicks(), processCPU(), allocatedBytes()
	return &v
}

// allocatedBytes is what the process has allocated on the Go heap so far
// (runtime/metrics, which unlike ReadMemStats does not stop the world).
func allocatedBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// counters are the observed store's running totals.
type counters struct {
	sagaCommits, aggCommits, messages, marks, marked, mongoDocs atomic.Int64
	// loads counts stream loads: an actor loads its stream when it is
	// (re)activated.
	loads atomic.Int64
}

// countSnapshot is a copy of the counters.
type countSnapshot struct {
	SagaCommits, AggCommits, Messages, Marks, Marked, MongoDocs, Loads int64
}

func (c *counters) snapshot() countSnapshot {
	return countSnapshot{
		SagaCommits: c.sagaCommits.Load(), AggCommits: c.aggCommits.Load(), Messages: c.messages.Load(),
		Marks: c.marks.Load(), Marked: c.marked.Load(), MongoDocs: c.mongoDocs.Load(), Loads: c.loads.Load(),
	}
}

// costPer divides the work done between two snapshots by n sagas.
func costPer(before, after countSnapshot, n int) Cost {
	if n <= 0 {
		return Cost{}
	}
	f := func(a, b int64) float64 { return float64(b-a) / float64(n) }
	return Cost{
		Messages:  f(before.Messages, after.Messages),
		Commits:   f(before.SagaCommits+before.AggCommits, after.SagaCommits+after.AggCommits),
		Loads:     f(before.Loads, after.Loads),
		Marks:     f(before.Marks, after.Marks),
		MongoDocs: f(before.MongoDocs, after.MongoDocs),
	}
}

// sagaPrefix is how the engine names saga streams (actors.SagaStream).
const sagaPrefix = "saga/"

// Append implements store.Store.
func (s *observedStore) Append(ctx context.Context, c store.Commit) error {
	if err := s.Store.Append(ctx, c); err != nil {
		return err
	}
	s.counts.messages.Add(int64(len(c.Outbox)))
	s.counts.mongoDocs.Add(int64(mongoDocs(c)))
	if id, ok := strings.CutPrefix(c.Stream, sagaPrefix); ok {
		s.counts.sagaCommits.Add(1)
		if s.onSaga != nil && c.Meta != nil {
			s.onSaga(id, c.Version, workflows.Status(c.Meta.Status))
		}
		return nil
	}
	s.counts.aggCommits.Add(1)
	if s.onAggregate != nil {
		s.onAggregate(c.Stream)
	}
	return nil
}

// Load implements store.Store.
func (s *observedStore) Load(ctx context.Context, stream string, from uint64) ([]store.Commit, error) {
	s.counts.loads.Add(1)
	return s.Store.Load(ctx, stream, from)
}

// MarkDispatched implements store.Store.
func (s *observedStore) MarkDispatched(ctx context.Context, ids ...string) error {
	err := s.Store.MarkDispatched(ctx, ids...)
	if err == nil {
		s.counts.marks.Add(1)
		s.counts.marked.Add(int64(len(ids)))
		s.counts.mongoDocs.Add(int64(len(ids)))
	}
	return err
}

// mongoDocs is the number of documents store/mongo writes for c: the
// commit, its handled markers, outbox entries, timers set and cancelled,
// and its stream head (see store/mongo's package documentation).
func mongoDocs(c store.Commit) int {
	return 1 + len(c.Handled) + len(c.Outbox) + len(c.Timers) + len(c.CancelTimers) + 1
}

// finished reports whether a saga in status st will take no more steps
// (needs_attention counts: it waits for an operator).
func finished(st workflows.Status) bool {
	return st.Terminal() || st == workflows.StatusNeedsAttention
}
