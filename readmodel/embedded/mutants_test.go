package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/readmodel"
	"github.com/sagaflow/sagaflow/readmodel/embedded"
	"github.com/sagaflow/sagaflow/readmodel/readmodeltest"
)

// The conformance suite is only worth something if it fails for a broken
// store. Each mutant breaks one promise of readmodel.Store by wrapping a
// working bbolt store; TestSuiteCatchesMutants runs the suite's group
// that covers the promise against it in a child process and requires
// that group to fail.

type mutant struct {
	readmodel.Store
	update     func(ctx context.Context, model, stream string, seq uint64, fn func(context.Context, readmodel.Tx) error) (readmodel.Result, error)
	checkpoint func(ctx context.Context, model, stream string) (uint64, error)
	changes    func(ctx context.Context, model string, after uint64, limit int) ([]readmodel.Change, uint64, error)
	drop       func(ctx context.Context, model string) error
	forget     bool
}

func (m *mutant) Update(ctx context.Context, model, stream string, seq uint64, fn func(context.Context, readmodel.Tx) error) (readmodel.Result, error) {
	if m.update != nil {
		return m.update(ctx, model, stream, seq, fn)
	}
	return m.Store.Update(ctx, model, stream, seq, fn)
}

func (m *mutant) Checkpoint(ctx context.Context, model, stream string) (uint64, error) {
	if m.checkpoint != nil {
		return m.checkpoint(ctx, model, stream)
	}
	return m.Store.Checkpoint(ctx, model, stream)
}

func (m *mutant) Changes(ctx context.Context, model string, after uint64, limit int) ([]readmodel.Change, uint64, error) {
	if m.changes != nil {
		return m.changes(ctx, model, after, limit)
	}
	return m.Store.Changes(ctx, model, after, limit)
}

func (m *mutant) Drop(ctx context.Context, model string) error {
	if m.drop != nil {
		return m.drop(ctx, model)
	}
	return m.Store.Drop(ctx, model)
}

// shadow applies fn as the first event of a stream nobody else uses, so
// its writes land although the real stream's checkpoint refuses them.
func shadow(m *mutant, ctx context.Context, model, stream string, seq uint64, fn func(context.Context, readmodel.Tx) error) (readmodel.Result, error) {
	return m.Store.Update(ctx, model, fmt.Sprintf("shadow-%s-%d-%d", stream, seq, time.Now().UnixNano()), 1, fn)
}

var mutants = map[string]struct {
	group string
	spoil func(m *mutant)
}{
	"AppliesDuplicates": {"Idempotent", func(m *mutant) {
		m.update = func(ctx context.Context, model, stream string, seq uint64, fn func(context.Context, readmodel.Tx) error) (readmodel.Result, error) {
			r, err := m.Store.Update(ctx, model, stream, seq, fn)
			if err == nil && !r.Applied {
				return shadow(m, ctx, model, stream, seq, fn)
			}
			return r, err
		}
	}},
	"AppliesOutOfOrder": {"InOrder", func(m *mutant) {
		m.update = func(ctx context.Context, model, stream string, seq uint64, fn func(context.Context, readmodel.Tx) error) (readmodel.Result, error) {
			r, err := m.Store.Update(ctx, model, stream, seq, fn)
			if errors.Is(err, readmodel.ErrOutOfOrder) {
				return shadow(m, ctx, model, stream, seq, fn)
			}
			return r, err
		}
	}},
	"KeepsWritesOfAFailedUpdate": {"AtomicRefusal", func(m *mutant) {
		m.update = func(ctx context.Context, model, stream string, seq uint64, fn func(context.Context, readmodel.Tx) error) (readmodel.Result, error) {
			var fnErr error
			r, err := m.Store.Update(ctx, model, stream, seq, func(ctx context.Context, tx readmodel.Tx) error {
				fnErr = fn(ctx, tx)
				return nil
			})
			if fnErr != nil {
				return readmodel.Result{}, fnErr
			}
			return r, err
		}
	}},
	"CheckpointForgotten": {"PutGetList", func(m *mutant) {
		m.checkpoint = func(context.Context, string, string) (uint64, error) { return 0, nil }
	}},
	"ChangesIgnoreAfter": {"ChangeLog", func(m *mutant) {
		m.changes = func(ctx context.Context, model string, _ uint64, limit int) ([]readmodel.Change, uint64, error) {
			return m.Store.Changes(ctx, model, 0, limit)
		}
	}},
	"ChangesIgnoreWindow": {"ChangeLogWindow", func(m *mutant) {
		m.changes = func(ctx context.Context, model string, after uint64, limit int) ([]readmodel.Change, uint64, error) {
			ch, _, err := m.Store.Changes(ctx, model, after, limit)
			return ch, 1, err
		}
	}},
	"DropDoesNothing": {"Drop", func(m *mutant) {
		m.drop = func(context.Context, string) error { return nil }
	}},
	"DropResetsPositions": {"Drop", func(m *mutant) {
		m.update = func(ctx context.Context, model, stream string, seq uint64, fn func(context.Context, readmodel.Tx) error) (readmodel.Result, error) {
			r, err := m.Store.Update(ctx, model, stream, seq, fn)
			for i := range r.Changes {
				r.Changes[i].Position = uint64(i + 1)
			}
			return r, err
		}
	}},
	"ForgetsOnReopen": {"Durability", func(m *mutant) { m.forget = true }},
}

const mutantEnv = "SAGAFLOW_READMODELTEST_MUTANT"

// TestMutant runs the suite against the mutant named by
// $SAGAFLOW_READMODELTEST_MUTANT; only TestSuiteCatchesMutants starts it.
func TestMutant(t *testing.T) {
	name := os.Getenv(mutantEnv)
	if name == "" {
		t.Skip("runs only as a child of TestSuiteCatchesMutants")
	}
	mu, ok := mutants[name]
	if !ok {
		t.Fatalf("unknown mutant %q", name)
	}
	readmodeltest.Run(t, func(t *testing.T) readmodeltest.Opener {
		dir, opened := t.TempDir(), 0
		return func(t *testing.T, logSize int) readmodel.Store {
			opened++
			path := filepath.Join(dir, "readmodels.db")
			m := &mutant{}
			mu.spoil(m)
			if m.forget && opened > 1 {
				path = filepath.Join(dir, fmt.Sprintf("fresh-%d.db", opened))
			}
			s, err := embedded.Open(path, embedded.WithLogSize(logSize))
			if err != nil {
				t.Fatal(err)
			}
			m.Store = s
			return m
		}
	})
}

func TestSuiteCatchesMutants(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process per mutant")
	}
	if os.Getenv(mutantEnv) != "" {
		t.Skip("inside a mutant's child process")
	}
	for name, mu := range mutants {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			run := "^TestMutant$/^" + regexp.QuoteMeta(mu.group) + "$"
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+run, "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), mutantEnv+"="+name)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("the suite's %s tests passed against mutant %s (err %v):\n%s", mu.group, name, err, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestMutant/"+mu.group) {
				t.Fatalf("child process failed, but not in group %s:\n%s", mu.group, out)
			}
		})
	}
}
