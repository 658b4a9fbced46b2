package engine_test

import (
	"github.com/sagaflow/sagaflow/internal/testenv"

	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
	mongostore "github.com/sagaflow/sagaflow/store/mongo"
)

// testStore is where one test's engine keeps its state: a directory for
// the embedded store, or a fresh MongoDB database.
type testStore struct {
	kind    string // "embedded" or "mongo"
	dir     string
	uri     string
	mongoDB string
}

// options returns engine options that use the store; for MongoDB the store
// is opened here and closed when the test ends.
func (s testStore) options(t *testing.T) engine.Options {
	t.Helper()
	if s.kind == "embedded" {
		return engine.Options{DataDir: s.dir}
	}
	return engine.Options{Store: s.open(t)}
}

// open opens the store directly (to inspect what the engine wrote).
func (s testStore) open(t *testing.T) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		st  store.Store
		err error
	)
	if s.kind == "embedded" {
		st, err = embedded.Open(ctx, s.dir)
	} else {
		st, err = mongostore.Open(ctx, s.uri, mongostore.WithDatabase(s.mongoDB))
	}
	if err != nil {
		t.Fatalf("open %s store: %v", s.kind, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// forEachStore runs f once on the embedded store and once on MongoDB.
func forEachStore(t *testing.T, f func(t *testing.T, s testStore)) {
	t.Run("embedded", func(t *testing.T) {
		f(t, testStore{kind: "embedded", dir: t.TempDir()})
	})
	t.Run("mongo", func(t *testing.T) {
		uri := testenv.MongoDB(t)
		db := freshDatabase(t, uri)
		f(t, testStore{kind: "mongo", uri: uri, mongoDB: db})
	})
}

// freshDatabase names a new database and drops it when the test ends.
func freshDatabase(t *testing.T, uri string) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "sagaflow_engine_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		client, err := mongo.Connect(options.Client().ApplyURI(uri))
		if err != nil {
			t.Logf("drop %s: %v", name, err)
			return
		}
		defer client.Disconnect(ctx)
		if err := client.Database(name).Drop(ctx); err != nil {
			t.Logf("drop %s: %v", name, err)
		}
	})
	return name
}
