package mongo_test

import (
	"github.com/sagaflow/sagaflow/internal/testenv"

	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/mongo"
	"github.com/sagaflow/sagaflow/store/storetest"
)

func TestConformance(t *testing.T) {
	uri := testenv.MongoDB(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, uri, freshDatabase(t, uri))
	}, storetest.Features{
		Reopen: func(t *testing.T, old store.Store) store.Store {
			t.Helper()
			s, ok := old.(*mongo.Store)
			if !ok {
				t.Fatalf("reopen: %T is not a *mongo.Store", old)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("reopen: close: %v", err)
			}
			return open(t, uri, s.Database())
		},
		DetectsGaps:   true,
		TimePrecision: 1, // times are kept in the commit's JSON, exactly
	})
}

// freshDatabase returns a new database name and drops the database when
// the test ends.
func freshDatabase(t *testing.T, uri string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "sagaflow_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := mongo.DropDatabase(ctx, uri, name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	return name
}

func open(t *testing.T, uri, database string, opts ...mongo.Option) *mongo.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := mongo.Open(ctx, uri, append([]mongo.Option{mongo.WithDatabase(database)}, opts...)...)
	if err != nil {
		t.Fatalf("Open(%s): %v", database, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// TestUnreachableServer: with nothing listening, Open gives up within its
// retry budget with an error that wraps store.ErrUnavailable.
func TestUnreachableServer(t *testing.T) {
	const budget = 1500 * time.Millisecond
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := mongo.Open(ctx, "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200&connectTimeoutMS=200", mongo.WithRetry(budget))
	took := time.Since(start)
	if err == nil {
		_ = s.Close()
		t.Fatal("Open against 127.0.0.1:1 succeeded")
	}
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open error = %v, want one wrapping store.ErrUnavailable", err)
	}
	if took > budget+2*time.Second {
		t.Fatalf("Open took %s with a retry budget of %s", took, budget)
	}
	t.Logf("Open gave up after %s: %v", took.Round(time.Millisecond), err)
}

// TestUnreachableServerHonoursContext: a context that ends before the retry
// budget ends the wait, with the context's error.
func TestUnreachableServerHonoursContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := mongo.Open(ctx, "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=5000", mongo.WithRetry(time.Minute))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open error = %v, want one wrapping context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Open took %s with a 300ms context", took)
	}
}
