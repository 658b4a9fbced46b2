package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

// testOptimisticConcurrency (I2): of the commits at one stream version,
// exactly one is written; the others fail with ErrConcurrency and leave no
// trace.
func (s *suite) testOptimisticConcurrency(t *testing.T) {
	t.Run("SecondAppendAtSameVersionConflicts", func(t *testing.T) {
		ctx := testContext(t)
		st := s.newStore(t)
		first := fullCommit("occ", 1, "first")
		mustAppend(t, ctx, st, cloneCommit(first))
		appendFails(t, ctx, st, fullCommit("occ", 1, "second"), store.ErrConcurrency)
		next := fullCommit("occ", 2, "first")
		mustAppend(t, ctx, st, cloneCommit(next))
		appendFails(t, ctx, st, fullCommit("occ", 2, "second"), store.ErrConcurrency)
		appendFails(t, ctx, st, fullCommit("occ", 1, "third"), store.ErrConcurrency)
		s.cmp.requireCommits(t, "Load(occ)", mustLoad(t, ctx, st, "occ", 0), []store.Commit{first, next})
		requireHandled(t, ctx, st, "occ", inID("occ", 1, "second"), 0, false)
	})

	t.Run("RacingWriters", func(t *testing.T) {
		const (
			writers = 16
			rounds  = 50
			stream  = "race"
		)
		ctx := testContext(t)
		st := s.newStore(t)
		build := func(round, writer int) store.Commit {
			v := uint64(round + 1)
			tag := fmt.Sprintf("w%02d", writer)
			c := bareCommit(stream, v, tag)
			c.Handled = []string{inID(stream, v, tag)}
			c.Outbox = []message.Envelope{envelope(outID(stream, v, tag, 0), message.KindEvent, stream, v, c.At)}
			return c
		}

		// Every round, all writers append at the same version; the next
		// round starts when all of them have their answer.
		began := time.Now()
		results := make([][writers]error, rounds)
		start := make([]chan struct{}, rounds)
		for r := range start {
			start[r] = make(chan struct{})
		}
		var done [rounds]sync.WaitGroup
		var all sync.WaitGroup
		for r := range done {
			done[r].Add(writers)
		}
		for w := range writers {
			all.Add(1)
			go func() {
				defer all.Done()
				for r := range rounds {
					select {
					case <-start[r]:
					case <-ctx.Done():
						results[r][w] = ctx.Err()
						done[r].Done()
						continue
					}
					results[r][w] = st.Append(ctx, build(r, w))
					done[r].Done()
				}
			}()
		}
		for r := range rounds {
			close(start[r])
			done[r].Wait()
		}
		all.Wait()
		took := time.Since(began)
		t.Logf("%d writers x %d rounds at one stream: %d appends in %s, %.0f appends/s (%.0f commits/s)",
			writers, rounds, writers*rounds, took.Round(time.Millisecond),
			float64(writers*rounds)/took.Seconds(), float64(rounds)/took.Seconds())

		winners := make([]int, rounds)
		var want []store.Commit
		for r := range rounds {
			winners[r] = -1
			for w, err := range results[r] {
				switch {
				case err == nil && winners[r] >= 0:
					t.Fatalf("round %d (v%d): writers %d and %d both won", r, r+1, winners[r], w)
				case err == nil:
					winners[r] = w
				case !errors.Is(err, store.ErrConcurrency):
					t.Fatalf("round %d (v%d): writer %d got %v, want nil or ErrConcurrency", r, r+1, w, err)
				}
			}
			if winners[r] < 0 {
				t.Fatalf("round %d (v%d): no writer won", r, r+1)
			}
			want = append(want, build(r, winners[r]))
		}

		got := mustLoad(t, ctx, st, stream, 0)
		s.cmp.requireCommits(t, "Load(race): the winners' commits, versions 1..50", got, want)
		if info := mustInfo(t, ctx, st, stream); info.Version != rounds {
			t.Fatalf("Info(race).Version = %d, want %d", info.Version, rounds)
		}
		var wantOutbox []store.OutboxEntry
		for _, c := range want {
			wantOutbox = append(wantOutbox, outboxEntriesOf(c)...)
		}
		s.cmp.requireOutbox(t, "PendingOutbox: only the winners' messages", mustPending(t, ctx, st, farFuture, observeLimit), wantOutbox)
		for r := range rounds {
			for w := range writers {
				c := build(r, w)
				requireHandled(t, ctx, st, stream, c.Handled[0], c.Version, w == winners[r])
			}
		}
	})
}

// testConcurrentStreams: many writers on distinct streams all succeed and
// every commit comes back (this is where a store's batching shows).
func (s *suite) testConcurrentStreams(t *testing.T) {
	const (
		writers = 32
		commits = 50
	)
	ctx := testContext(t)
	st := s.newStore(t)
	streamOf := func(w int) string { return fmt.Sprintf("many/%02d", w) }
	build := func(w int, v uint64) store.Commit {
		c := bareCommit(streamOf(w), v, "a")
		c.Handled = []string{inID(c.Stream, v, "a")}
		c.Outbox = []message.Envelope{envelope(outID(c.Stream, v, "a", 0), message.KindEvent, c.Stream, v, c.At)}
		if v == 1 {
			c.Meta = &store.Meta{Kind: "aggregate", Type: "storetest.Thing", CreatedAt: c.At, UpdatedAt: c.At}
		}
		return c
	}
	began := time.Now()
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := uint64(1); v <= commits; v++ {
				if err := st.Append(ctx, build(w, v)); err != nil {
					errs[w] = fmt.Errorf("Append(%s v%d): %w", streamOf(w), v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(began)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writers x %d commits on distinct streams: %d appends in %s, %.0f appends/s",
		writers, commits, writers*commits, took.Round(time.Millisecond), float64(writers*commits)/took.Seconds())
	for w := range writers {
		want := make([]store.Commit, 0, commits)
		for v := uint64(1); v <= commits; v++ {
			want = append(want, build(w, v))
		}
		s.cmp.requireCommits(t, "Load("+streamOf(w)+")", mustLoad(t, ctx, st, streamOf(w), 0), want)
		requireHandled(t, ctx, st, streamOf(w), inID(streamOf(w), commits, "a"), commits, true)
	}
	if got := mustPending(t, ctx, st, farFuture, observeLimit*2); len(got) != writers*commits {
		t.Fatalf("PendingOutbox returned %d entries, want %d", len(got), writers*commits)
	}
	list, err := st.List(ctx, store.ListFilter{Limit: writers + 1})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != writers {
		t.Fatalf("List returned %d streams, want %d", len(list), writers)
	}
	for i, info := range list {
		if info.Stream != streamOf(i) || info.Version != commits {
			t.Fatalf("List[%d] = %s v%d, want %s v%d", i, info.Stream, info.Version, streamOf(i), commits)
		}
	}
}
