package mongo_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	drv "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/readmodel"
	"github.com/sagaflow/sagaflow/readmodel/mongo"
	"github.com/sagaflow/sagaflow/readmodel/readmodeltest"
)

// freshDatabase names a new database and drops it when the test ends.
func freshDatabase(t testing.TB, uri string) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "sagaflow_rm_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := drv.Connect(options.Client().ApplyURI(uri))
		if err != nil {
			t.Logf("drop %s: %v", name, err)
			return
		}
		defer c.Disconnect(ctx)
		if err := c.Database(name).Drop(ctx); err != nil {
			t.Logf("drop %s: %v", name, err)
		}
	})
	return name
}

func TestConformance(t *testing.T) {
	uri := testenv.MongoDB(t)
	readmodeltest.Run(t, func(t *testing.T) readmodeltest.Opener {
		db := freshDatabase(t, uri)
		return func(t *testing.T, logSize int) readmodel.Store {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := mongo.Open(ctx, uri, mongo.WithDatabase(db), mongo.WithLogSize(logSize))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}
