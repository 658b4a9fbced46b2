package embedded_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/storetest"
)

// The conformance suite is only worth something if it fails for a broken
// store. Each mutant below breaks one promise of store.Store by wrapping a
// real embedded store; TestSuiteCatchesMutants runs the suite's group that
// covers the promise against it, in a child process (a failing suite must
// not fail this test run), and requires that group to fail.

// mutant is a store.Store that forwards to a working store; its fields
// override single methods.
type mutant struct {
	store.Store
	append        func(ctx context.Context, c store.Commit) error
	load          func(ctx context.Context, stream string, from uint64) ([]store.Commit, error)
	handled       func(ctx context.Context, stream, msgID string) (uint64, bool, error)
	list          func(ctx context.Context, f store.ListFilter) ([]store.StreamInfo, error)
	pending       func(ctx context.Context, olderThan time.Time, limit int) ([]store.OutboxEntry, error)
	markDispatch  func(ctx context.Context, ids ...string) error
	dueTimers     func(ctx context.Context, now time.Time, limit int) ([]store.Timer, error)
	saveSnapshot  func(ctx context.Context, snap store.Snapshot) error
	createKey     func(ctx context.Context, k store.SubjectKey) (store.SubjectKey, error)
	deleteKey     func(ctx context.Context, subject string) error
	forgetOnClose bool
}

func (m *mutant) CreateKey(ctx context.Context, k store.SubjectKey) (store.SubjectKey, error) {
	if m.createKey != nil {
		return m.createKey(ctx, k)
	}
	return m.Store.CreateKey(ctx, k)
}

func (m *mutant) DeleteKey(ctx context.Context, subject string) error {
	if m.deleteKey != nil {
		return m.deleteKey(ctx, subject)
	}
	return m.Store.DeleteKey(ctx, subject)
}

func (m *mutant) Append(ctx context.Context, c store.Commit) error {
	if m.append != nil {
		return m.append(ctx, c)
	}
	return m.Store.Append(ctx, c)
}

func (m *mutant) Load(ctx context.Context, stream string, from uint64) ([]store.Commit, error) {
	if m.load != nil {
		return m.load(ctx, stream, from)
	}
	return m.Store.Load(ctx, stream, from)
}

func (m *mutant) Handled(ctx context.Context, stream, msgID string) (uint64, bool, error) {
	if m.handled != nil {
		return m.handled(ctx, stream, msgID)
	}
	return m.Store.Handled(ctx, stream, msgID)
}

func (m *mutant) List(ctx context.Context, f store.ListFilter) ([]store.StreamInfo, error) {
	if m.list != nil {
		return m.list(ctx, f)
	}
	return m.Store.List(ctx, f)
}

func (m *mutant) PendingOutbox(ctx context.Context, olderThan time.Time, limit int) ([]store.OutboxEntry, error) {
	if m.pending != nil {
		return m.pending(ctx, olderThan, limit)
	}
	return m.Store.PendingOutbox(ctx, olderThan, limit)
}

func (m *mutant) MarkDispatched(ctx context.Context, ids ...string) error {
	if m.markDispatch != nil {
		return m.markDispatch(ctx, ids...)
	}
	return m.Store.MarkDispatched(ctx, ids...)
}

func (m *mutant) DueTimers(ctx context.Context, now time.Time, limit int) ([]store.Timer, error) {
	if m.dueTimers != nil {
		return m.dueTimers(ctx, now, limit)
	}
	return m.Store.DueTimers(ctx, now, limit)
}

func (m *mutant) SaveSnapshot(ctx context.Context, snap store.Snapshot) error {
	if m.saveSnapshot != nil {
		return m.saveSnapshot(ctx, snap)
	}
	return m.Store.SaveSnapshot(ctx, snap)
}

// mutants maps a mutant's name to the suite group that must catch it and
// to how it breaks a working store.
var mutants = map[string]struct {
	group string
	spoil func(m *mutant)
}{
	"LoadDropsHeaders": {"AppendLoad", func(m *mutant) {
		m.load = func(ctx context.Context, stream string, from uint64) ([]store.Commit, error) {
			cs, err := m.Store.Load(ctx, stream, from)
			for i := range cs {
				for j := range cs[i].Events {
					cs[i].Events[j].Headers = nil
				}
			}
			return cs, err
		}
	}},
	"LoadTruncatesTimesToSeconds": {"AppendLoad", func(m *mutant) {
		m.load = func(ctx context.Context, stream string, from uint64) ([]store.Commit, error) {
			cs, err := m.Store.Load(ctx, stream, from)
			for i := range cs {
				cs[i].At = cs[i].At.Truncate(time.Second)
			}
			return cs, err
		}
	}},
	"ConflictReportedAsSuccess": {"OptimisticConcurrency", func(m *mutant) {
		m.append = func(ctx context.Context, c store.Commit) error {
			if err := m.Store.Append(ctx, c); !errors.Is(err, store.ErrConcurrency) {
				return err
			}
			return nil
		}
	}},
	"ConflictReportedAsOtherError": {"OptimisticConcurrency", func(m *mutant) {
		m.append = func(ctx context.Context, c store.Commit) error {
			err := m.Store.Append(ctx, c)
			if errors.Is(err, store.ErrConcurrency) {
				return errors.New("something went wrong")
			}
			return err
		}
	}},
	"AcceptsTimerWithoutDueTime": {"InvalidCommits", func(m *mutant) {
		m.append = func(ctx context.Context, c store.Commit) error {
			for i := range c.Timers {
				if c.Timers[i].DueAt.IsZero() {
					c.Timers[i].DueAt = time.Now()
				}
			}
			return m.Store.Append(ctx, c)
		}
	}},
	"SilentlyDropsVersion50": {"ConcurrentStreams", func(m *mutant) {
		m.append = func(ctx context.Context, c store.Commit) error {
			if c.Version == 50 {
				return nil
			}
			return m.Store.Append(ctx, c)
		}
	}},
	"ClosedErrorNotWrapped": {"Closed", func(m *mutant) {
		m.load = func(ctx context.Context, stream string, from uint64) ([]store.Commit, error) {
			cs, err := m.Store.Load(ctx, stream, from)
			if err != nil {
				err = errors.New(err.Error())
			}
			return cs, err
		}
	}},
	"RefusedCommitLeavesItsTimers": {"AtomicRefusal", func(m *mutant) {
		m.append = func(ctx context.Context, c store.Commit) error {
			err := m.Store.Append(ctx, c)
			if err != nil && c.Stream != "" {
				leak := store.Commit{Stream: "leak/" + c.Stream, Version: 1, Timers: c.Timers, At: c.At}
				_ = m.Store.Append(ctx, leak)
			}
			return err
		}
	}},
	"HandledForgetsVersion": {"Handled", func(m *mutant) {
		m.handled = func(ctx context.Context, stream, msgID string) (uint64, bool, error) {
			_, ok, err := m.Store.Handled(ctx, stream, msgID)
			return 1, ok, err
		}
	}},
	"OutboxIgnoresOlderThan": {"Outbox", func(m *mutant) {
		m.pending = func(ctx context.Context, _ time.Time, limit int) ([]store.OutboxEntry, error) {
			return m.Store.PendingOutbox(ctx, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), limit)
		}
	}},
	"MarkDispatchedDoesNothing": {"Outbox", func(m *mutant) {
		m.markDispatch = func(ctx context.Context, ids ...string) error { return nil }
	}},
	"DueTimersIgnoresLimit": {"Timers", func(m *mutant) {
		m.dueTimers = func(ctx context.Context, now time.Time, _ int) ([]store.Timer, error) {
			return m.Store.DueTimers(ctx, now, 1000)
		}
	}},
	"ListIgnoresStatus": {"InfoAndList", func(m *mutant) {
		m.list = func(ctx context.Context, f store.ListFilter) ([]store.StreamInfo, error) {
			f.Status = nil
			return m.Store.List(ctx, f)
		}
	}},
	"ListIgnoresAfter": {"InfoAndList", func(m *mutant) {
		m.list = func(ctx context.Context, f store.ListFilter) ([]store.StreamInfo, error) {
			f.After = ""
			return m.Store.List(ctx, f)
		}
	}},
	"IgnoresContext": {"Context", func(m *mutant) {
		m.load = func(_ context.Context, stream string, from uint64) ([]store.Commit, error) {
			return m.Store.Load(context.Background(), stream, from)
		}
	}},
	"OlderSnapshotWins": {"Snapshots", func(m *mutant) {
		// An older save overwrites the newer snapshot's state (under the
		// newer version number, which the store then accepts).
		m.saveSnapshot = func(ctx context.Context, snap store.Snapshot) error {
			old, ok, err := m.Store.LoadSnapshot(ctx, snap.Stream)
			if err != nil {
				return err
			}
			if ok && old.Version > snap.Version {
				snap.Version = old.Version
			}
			return m.Store.SaveSnapshot(ctx, snap)
		}
	}},
	"ForgetsOnReopen": {"Durability", func(m *mutant) { m.forgetOnClose = true }},
	"DeleteKeyDoesNothing": {"Keys", func(m *mutant) {
		m.deleteKey = func(ctx context.Context, subject string) error { return nil }
	}},
	"CreateKeyOverwrites": {"Keys", func(m *mutant) {
		// A second key replaces the first: data sealed under the first
		// would no longer open.
		m.createKey = func(ctx context.Context, k store.SubjectKey) (store.SubjectKey, error) {
			if err := m.Store.DeleteKey(ctx, k.Subject); err != nil {
				return store.SubjectKey{}, err
			}
			return m.Store.CreateKey(ctx, k)
		}
	}},
}

// mutantEnv names the mutant a child process runs.
const mutantEnv = "SAGAFLOW_STORETEST_MUTANT"

// TestMutant runs the suite against the mutant named by $SAGAFLOW_STORETEST_MUTANT.
// It is skipped unless TestSuiteCatchesMutants started it.
func TestMutant(t *testing.T) {
	name := os.Getenv(mutantEnv)
	if name == "" {
		t.Skip("runs only as a child of TestSuiteCatchesMutants")
	}
	mu, ok := mutants[name]
	if !ok {
		t.Fatalf("unknown mutant %q", name)
	}
	wrap := func(t *testing.T, st store.Store) store.Store {
		m := &mutant{Store: st}
		mu.spoil(m)
		return m
	}
	storetest.Run(t,
		func(t *testing.T) store.Store { return wrap(t, newStore(t)) },
		storetest.Features{
			DetectsGaps: true,
			Reopen: func(t *testing.T, old store.Store) store.Store {
				m := old.(*mutant)
				if m.forgetOnClose {
					_ = m.Store.Close()
					return wrap(t, newStore(t))
				}
				return wrap(t, reopen(t, m.Store))
			},
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
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			run := "^TestMutant$/^" + regexp.QuoteMeta(mu.group) + "$"
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+run, "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), mutantEnv+"="+name)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("the suite's %s tests passed against mutant %s (err %v):\n%s", mu.group, name, err, tail(out))
			}
			if !strings.Contains(string(out), "--- FAIL: TestMutant/"+mu.group) {
				t.Fatalf("child process failed, but not in group %s:\n%s", mu.group, tail(out))
			}
		})
	}
}

func tail(out []byte) string {
	const n = 3000
	if len(out) > n {
		return "..." + string(out[len(out)-n:])
	}
	return string(out)
}
