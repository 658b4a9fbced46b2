package mongo_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/readmodel"
	"github.com/sagaflow/sagaflow/readmodel/mongo"
)

// BenchmarkUpdate measures one event's Update on MongoDB (a document
// read, the intent insert and the derived writes), over 64 streams.
func BenchmarkUpdate(b *testing.B) {
	uri := testenv.MongoDB(b)
	db := freshDatabase(b, uri)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := mongo.Open(ctx, uri, mongo.WithDatabase(db))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	for i := range b.N {
		stream, seq := fmt.Sprintf("s%d", i%64), uint64(i/64+1)
		_, err := s.Update(context.Background(), "m", stream, seq, func(ctx context.Context, tx readmodel.Tx) error {
			if _, _, err := tx.Get(ctx, stream); err != nil {
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
