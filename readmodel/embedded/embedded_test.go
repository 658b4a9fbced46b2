package embedded_test

import (
	"path/filepath"
	"testing"

	"github.com/sagaflow/sagaflow/readmodel"
	"github.com/sagaflow/sagaflow/readmodel/embedded"
	"github.com/sagaflow/sagaflow/readmodel/readmodeltest"
)

func opener(t *testing.T) readmodeltest.Opener {
	path := filepath.Join(t.TempDir(), "readmodels.db")
	return func(t *testing.T, logSize int) readmodel.Store {
		t.Helper()
		s, err := embedded.Open(path, embedded.WithLogSize(logSize))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

func TestConformance(t *testing.T) {
	readmodeltest.Run(t, opener)
}
