package embedded_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
)

// benchCommit is a typical aggregate commit: one event, one outbox message
// (its public form) and the ID of the command it handled, about 1 KiB.
func benchCommit(stream string, v uint64) store.Commit {
	now := time.Now()
	payload := json.RawMessage(`{"customer":"` + stream + `","note":"` + strings.Repeat("x", 256) + `"}`)
	evt := message.Envelope{
		ID: message.NewID(), Kind: message.KindEvent, Type: "bench.Happened.v1", Source: "bench",
		Key: stream, Sequence: v, OccurredAt: now, Payload: payload,
		Headers: map[string]string{message.HeaderTraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	}
	out := evt
	out.ID = message.NewID()
	return store.Commit{
		Stream: stream, Version: v, Events: []message.Envelope{evt}, Outbox: []message.Envelope{out},
		Handled: []string{message.NewID()}, At: now,
	}
}

// BenchmarkAppendParallel measures the group commit: many goroutines, each
// appending to its own stream, share write transactions. It reports
// commits/s and the average number of commits per transaction (one fsync
// each).
func BenchmarkAppendParallel(b *testing.B) {
	for _, perProc := range []int{1, 8, 64, 256} {
		b.Run(fmt.Sprintf("goroutines=%dxGOMAXPROCS", perProc), func(b *testing.B) {
			s, err := embedded.Open(context.Background(), b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var next atomic.Int64
			before := s.Stats()
			b.SetParallelism(perProc)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				stream := fmt.Sprintf("bench/%d", next.Add(1))
				ctx := context.Background()
				for v := uint64(1); pb.Next(); v++ {
					if err := s.Append(ctx, benchCommit(stream, v)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			after := s.Stats()
			commits := after.Commits - before.Commits
			batches := max(after.Batches-before.Batches, 1)
			b.ReportMetric(float64(commits)/b.Elapsed().Seconds(), "commits/s")
			b.ReportMetric(float64(commits)/float64(batches), "commits/batch")
		})
	}
}
