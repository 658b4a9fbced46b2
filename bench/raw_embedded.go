package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
)

// rawEmbedded measures the embedded store's durable commit rate directly
// (fsync on, its defaults): one writer, whose every commit is its own
// transaction, and many writers, whose commits the store groups into
// shared transactions. A commit is shaped like an aggregate's: one event,
// one outbox message and one handled ID, about 1 KiB of JSON.
type rawEmbedded struct {
	dur     time.Duration
	writers int
}

func (r rawEmbedded) run(ctx context.Context) *EmbeddedRawResult {
	res := &EmbeddedRawResult{Status: StatusOK, Writers: r.writers}
	dir, err := os.MkdirTemp("", "sagaflow-bench-store-")
	if err != nil {
		res.Status = failed(err)
		return res
	}
	defer os.RemoveAll(dir)
	st, err := embedded.Open(ctx, dir)
	if err != nil {
		res.Status = failed(fmt.Errorf("open embedded store: %w", err))
		return res
	}
	defer closeWarn("embedded store", st.Close)

	single, _, err := appendRate(ctx, st, "single", 1, r.dur)
	if err != nil {
		res.Status = failed(err)
		return res
	}
	batched, perBatch, err := appendRate(ctx, st, "many", r.writers, r.dur)
	if err != nil {
		res.Status = failed(err)
		return res
	}
	res.Single, res.Batched, res.PerBatch = single, batched, perBatch
	return res
}

// appendRate appends from writers goroutines, each to its own stream, for
// a short warm-up and then for d, and returns commits/s and commits per
// transaction.
func appendRate(ctx context.Context, st *embedded.Store, name string, writers int, d time.Duration) (float64, float64, error) {
	warm := min(d/5, time.Second)
	start := time.Now()
	from, to := start.Add(warm), start.Add(warm+d)
	var (
		commits atomic.Int64
		mu      sync.Mutex
		fail    error
		wg      sync.WaitGroup
		once    sync.Once
		before  embedded.Stats
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("agg/bench.%s/%d", name, w)
			for v := uint64(1); ; v++ {
				t0 := time.Now()
				if !t0.Before(to) {
					return
				}
				if !t0.Before(from) {
					once.Do(func() { before = st.Stats() })
				}
				actx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := st.Append(actx, rawCommit(stream, v))
				cancel()
				if err != nil {
					mu.Lock()
					fail = fmt.Errorf("append %s v%d: %w", stream, v, err)
					mu.Unlock()
					return
				}
				if t1 := time.Now(); !t0.Before(from) && t1.Before(to) {
					commits.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if fail != nil {
		return 0, 0, fail
	}
	after := st.Stats()
	perBatch := float64(after.Commits-before.Commits) / float64(max(after.Batches-before.Batches, 1))
	return float64(commits.Load()) / d.Seconds(), perBatch, nil
}

// rawCommit is an aggregate commit: one event, its reply in the outbox,
// the handled command's ID.
func rawCommit(stream string, v uint64) store.Commit {
	now := time.Now()
	payload := json.RawMessage(`{"key":"` + stream + `","note":"` + strings.Repeat("x", 256) + `"}`)
	evt := message.Envelope{
		ID: message.NewID(), Kind: message.KindEvent, Type: "bench.Happened.v1", Source: "bench",
		Key: stream, Sequence: v, OccurredAt: now, Payload: payload,
	}
	reply := evt
	reply.ID, reply.Kind, reply.Destination = message.NewID(), message.KindReply, "bench"
	return store.Commit{
		Stream: stream, Version: v, Events: []message.Envelope{evt}, Outbox: []message.Envelope{reply},
		Handled: []string{message.NewID()}, At: now,
	}
}
