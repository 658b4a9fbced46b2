package embedded_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/sagaflow/sagaflow/readmodel"
	"github.com/sagaflow/sagaflow/readmodel/embedded"
)

// BenchmarkUpdate measures one event's Update (read a document, write it
// back with the checkpoint and the change-log entry: one bbolt
// transaction, one fsync), over 64 streams.
func BenchmarkUpdate(b *testing.B) {
	s, err := embedded.Open(filepath.Join(b.TempDir(), "rm.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		stream, seq := fmt.Sprintf("s%d", i%64), uint64(i/64+1)
		_, err := s.Update(ctx, "m", stream, seq, func(ctx context.Context, tx readmodel.Tx) error {
			_, _, err := tx.Get(ctx, stream)
			if err != nil {
				return err
			}
			return tx.Put(stream, json.RawMessage(fmt.Sprintf(`{"n":%d}`, seq)))
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
