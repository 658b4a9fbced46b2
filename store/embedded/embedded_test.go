package embedded_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
	"github.com/sagaflow/sagaflow/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, newStore, storetest.Features{
		Reopen:        reopen,
		DetectsGaps:   true,
		TimePrecision: 1, // nanoseconds: the store keeps times exactly
	})
}

// newStore opens a store in a fresh directory and closes it with the test.
func newStore(t *testing.T) store.Store {
	t.Helper()
	return open(t, t.TempDir())
}

// reopen closes old and opens its directory again, as a restart would.
func reopen(t *testing.T, old store.Store) store.Store {
	t.Helper()
	s, ok := old.(*embedded.Store)
	if !ok {
		t.Fatalf("reopen: %T is not an *embedded.Store", old)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("reopen: close: %v", err)
	}
	return open(t, s.Dir())
}

func open(t *testing.T, dir string, opts ...embedded.Option) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(context.Background(), dir, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}
