package engine_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/transport/inmem"
)

// The poison test's participant: a counter whose Add handler panics for a
// command marked Poison while broken is set.
type (
	poisonCounter struct {
		ID    string
		Total int
	}
	addToPoison struct {
		N      int  `json:"n"`
		Poison bool `json:"poison,omitempty"`
	}
	poisonAdded struct {
		N int `json:"n"`
	}
)

func poisonAggregate(broken *atomic.Bool, panics *atomic.Int32) *aggregate.Definition[poisonCounter] {
	d := aggregate.New("poisonees", "test.PoisonCounter", func(id string) poisonCounter { return poisonCounter{ID: id} })
	aggregate.Handle(d, func(s poisonCounter, c *addToPoison) ([]any, error) {
		if c.Poison && broken.Load() {
			panics.Add(1)
			panic(fmt.Sprintf("counter %s: cannot add %d (poisoned)", s.ID, c.N))
		}
		return []any{poisonAdded{N: c.N}}, nil
	})
	aggregate.Apply(d, func(s poisonCounter, e *poisonAdded) poisonCounter { s.Total += e.N; return s })
	return d
}

// TestPoisonMessageIsDeadLetteredAndReplayedAfterAFix proves issue 11
// item 6: a command whose handler always panics makes its actor restart
// on every delivery (the handler runs once per delivery, each time on a
// fresh actor that reloads its state) until the delivery limit, then it is
// dead-lettered with the panic's message; commands to 20 other keys, sent
// after it on the same partitions, are all applied meanwhile; once the
// handler is fixed, an operator replay of the dead letter applies it,
// once.
func TestPoisonMessageIsDeadLetteredAndReplayedAfterAFix(t *testing.T) {
	const limit = 4
	var (
		broken atomic.Bool
		panics atomic.Int32
	)
	broken.Store(true)
	tr := inmem.New(inmem.WithPartitions(2), inmem.WithDeliveryLimit(limit), inmem.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = tr.Close() })
	e := engine.New(engine.Options{DataDir: t.TempDir(), Transport: tr, Partitions: 2, AdminAddr: "127.0.0.1:0", Logger: quietLogger()}).
		Register(engine.Message[addToPoison]("test.AddToPoison.v1"), engine.Message[poisonAdded]("test.PoisonAdded.v1")).
		Register(poisonAggregate(&broken, &panics))
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	runEngine(t, e)
	ctx := context.Background()

	poison, err := e.Send(ctx, "poisonees", "poisoned", &addToPoison{N: 5, Poison: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := e.Send(ctx, "poisonees", fmt.Sprintf("good-%d", i), &addToPoison{N: i + 1}, nil); err != nil {
			t.Fatal(err)
		}
	}
	total := func(key string) int {
		t.Helper()
		s, _, err := e.AggregateState(ctx, "poisonees", key)
		if err != nil {
			t.Fatalf("state of %s: %v", key, err)
		}
		return s.(poisonCounter).Total
	}
	waitUntil(t, 20*time.Second, "the 20 good keys to be applied", func() bool {
		for i := range 20 {
			if total(fmt.Sprintf("good-%d", i)) != i+1 {
				return false
			}
		}
		return true
	})

	var reason string
	waitUntil(t, 20*time.Second, "the poison message to be dead-lettered", func() bool {
		dl, err := e.DeadLetter(ctx, poison.ID)
		reason = dl.Reason
		return err == nil
	})
	if !strings.Contains(reason, "cannot add 5 (poisoned)") || !strings.Contains(reason, "panic") {
		t.Errorf("dead-letter reason %q does not carry the panic's message", reason)
	}
	if got := panics.Load(); got != limit {
		t.Errorf("handler panicked %d times, want once per delivery up to the limit (%d)", got, limit)
	}
	if got := total("poisoned"); got != 0 {
		t.Errorf("poisoned counter total %d before the fix, want 0", got)
	}

	broken.Store(false) // the fix is deployed
	res, err := e.ReplayDeadLetters(ctx, []string{poison.ID})
	if err != nil || len(res.Done) != 1 {
		t.Fatalf("replay = %+v, %v", res, err)
	}
	waitUntil(t, 20*time.Second, "the replayed message to be applied", func() bool { return total("poisoned") == 5 })
	time.Sleep(100 * time.Millisecond)
	if got := eventTypes(t, e.Store(), "test.PoisonCounter", "poisoned"); len(got) != 1 {
		t.Errorf("poisoned counter events after the replay: %v, want exactly one", got)
	}
	if got := panics.Load(); got != limit {
		t.Errorf("handler panicked %d times in all, want %d", got, limit)
	}
}

// waitFor polls cond until it holds or within passes.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
