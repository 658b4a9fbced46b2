package embedded_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
)

// The crash test kills a process that is writing to the store with
// SIGKILL, several times over the same directory, and checks after each
// kill that every write the process had been told was durable is there,
// whole, and that nothing is there half (I1, I4, I5).

// crashEnv names the store directory a crash child writes to.
const crashEnv = "SAGAFLOW_EMBEDDED_CRASH_DIR"

const (
	crashWriters = 16 // streams written concurrently, one per writer
	crashRounds  = 3  // kills
	crashAcks    = 300
)

// crashStream is writer g's stream.
func crashStream(g int) string { return "crash-" + strconv.Itoa(g) }

// crashCommit is commit v of writer g's stream: one event, one outbox
// message, one handled message ID, and the stream's one timer replaced.
func crashCommit(g int, v uint64) store.Commit {
	stream := crashStream(g)
	id := fmt.Sprintf("%s/%d", stream, v)
	return store.Commit{
		Stream:  stream,
		Version: v,
		Events: []message.Envelope{{
			ID: id + "/evt", Kind: message.KindEvent, Type: "test.Happened.v1",
			Key: stream, Sequence: v, Payload: json.RawMessage(`{"v":` + strconv.FormatUint(v, 10) + `}`),
		}},
		Outbox: []message.Envelope{{
			ID: id + "/out", Kind: message.KindEvent, Type: "test.Happened.v1", Key: stream, Payload: json.RawMessage(`{}`),
		}},
		Handled:      []string{id + "/in"},
		CancelTimers: []string{stream + "/timer"},
		Timers:       []store.Timer{{ID: stream + "/timer", Stream: stream, DueAt: time.Date(2100, 1, 1, 0, 0, 0, int(v), time.UTC)}},
		At:           time.Now(),
	}
}

// TestCrashChild writes until it is killed: each writer appends the next
// commit of its stream and prints "acked G V" once Append returned, and
// after every third commit marks the commit before it dispatched and
// prints "marked G V". It is skipped unless
// TestKillKeepsEveryAcknowledgedWrite started it, and stops by itself
// after 60 s.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("runs only as a child of TestKillKeepsEveryAcknowledgedWrite")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := embedded.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...) // unbuffered: each line is out before the next write
	}
	var wg sync.WaitGroup
	for g := range crashWriters {
		wg.Go(func() {
			var next uint64 = 1
			if info, err := st.Info(ctx, crashStream(g)); err == nil {
				next = info.Version + 1
			} else if !errors.Is(err, store.ErrNotFound) {
				t.Error(err)
				return
			}
			for v := next; ctx.Err() == nil; v++ {
				if err := st.Append(ctx, crashCommit(g, v)); err != nil {
					t.Errorf("append v%d: %v", v, err)
					return
				}
				say("acked %d %d", g, v)
				if v%3 == 0 {
					if err := st.MarkDispatched(ctx, crashCommit(g, v-1).Outbox[0].ID); err != nil {
						t.Errorf("mark v%d: %v", v-1, err)
						return
					}
					say("marked %d %d", g, v-1)
				}
			}
		})
	}
	wg.Wait()
}

func TestKillKeepsEveryAcknowledgedWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills child processes")
	}
	if os.Getenv(crashEnv) != "" {
		t.Skip("inside a crash child")
	}
	dir := t.TempDir()
	acked := map[int]uint64{}           // writer -> highest acknowledged version
	marked := map[int]map[uint64]bool{} // writer -> versions marked dispatched
	for round := range crashRounds {
		runCrashChild(t, dir, acked, marked)
		checkAfterCrash(t, round, dir, acked, marked)
	}
}

// runCrashChild starts a writing child on dir, lets it acknowledge
// crashAcks more writes, kills it with SIGKILL and records what it
// acknowledged.
func runCrashChild(t *testing.T, dir string, acked map[int]uint64, marked map[int]map[uint64]bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	seen := 0
	for seen < crashAcks && lines.Scan() {
		var g int
		var v uint64
		switch line := lines.Text(); {
		case strings.HasPrefix(line, "acked "):
			if _, err := fmt.Sscanf(line, "acked %d %d", &g, &v); err != nil {
				t.Fatalf("child said %q: %v", line, err)
			}
			acked[g] = max(acked[g], v)
			seen++
		case strings.HasPrefix(line, "marked "):
			if _, err := fmt.Sscanf(line, "marked %d %d", &g, &v); err != nil {
				t.Fatalf("child said %q: %v", line, err)
			}
			if marked[g] == nil {
				marked[g] = map[uint64]bool{}
			}
			marked[g][v] = true
		}
	}
	if seen < crashAcks {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the child acknowledged %d writes and stopped (%v)", seen, lines.Err())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // killed: the error says so
}

// checkAfterCrash opens dir and checks it against what the children
// acknowledged: every acknowledged commit is there with all of its parts,
// nothing of a commit is there without the rest, and the outbox entries
// marked dispatched are gone.
func checkAfterCrash(t *testing.T, round int, dir string, acked map[int]uint64, marked map[int]map[uint64]bool) {
	t.Helper()
	ctx := t.Context()
	st, err := embedded.Open(ctx, dir)
	if err != nil {
		t.Fatalf("round %d: reopen after the kill: %v", round, err)
	}
	defer st.Close()
	pending, err := st.PendingOutbox(ctx, time.Now().Add(time.Hour), 10000)
	if err != nil {
		t.Fatal(err)
	}
	isPending := map[string]bool{}
	for _, e := range pending {
		if isPending[e.ID] {
			t.Errorf("round %d: outbox entry %s is pending twice", round, e.ID)
		}
		isPending[e.ID] = true
	}
	timers, err := st.DueTimers(ctx, time.Date(2101, 1, 1, 0, 0, 0, 0, time.UTC), 10000)
	if err != nil {
		t.Fatal(err)
	}
	timerOf := map[string][]store.Timer{}
	for _, tm := range timers {
		timerOf[tm.Stream] = append(timerOf[tm.Stream], tm)
	}
	for g := range crashWriters {
		stream := crashStream(g)
		commits, err := st.Load(ctx, stream, 1)
		if err != nil {
			t.Fatal(err)
		}
		head := uint64(len(commits))
		if head < acked[g] {
			t.Errorf("round %d: %s has %d commits, but v%d was acknowledged", round, stream, head, acked[g])
		}
		if info, err := st.Info(ctx, stream); head > 0 && (err != nil || info.Version != head) {
			t.Errorf("round %d: %s head is %+v, %v; want v%d, its last commit", round, stream, info, err, head)
		}
		for i, c := range commits {
			want := crashCommit(g, uint64(i+1))
			if c.Version != want.Version || len(c.Events) != 1 || c.Events[0].ID != want.Events[0].ID {
				t.Errorf("round %d: %s commit %d is v%d with events %v; want v%d with %s", round, stream, i, c.Version, c.Events, want.Version, want.Events[0].ID)
				continue
			}
			if v, ok, err := st.Handled(ctx, stream, want.Handled[0]); err != nil || !ok || v != want.Version {
				t.Errorf("round %d: %s v%d: Handled(%s) = %d, %v, %v", round, stream, c.Version, want.Handled[0], v, ok, err)
			}
			out := want.Outbox[0].ID
			if marked[g][c.Version] && isPending[out] {
				t.Errorf("round %d: %s marked dispatched but pending again", round, out)
			}
			if !marked[g][c.Version] && c.Version%3 != 2 && !isPending[out] {
				t.Errorf("round %d: %s of a durable commit is not pending, and was never marked", round, out)
			}
		}
		switch got := timerOf[stream]; {
		case head == 0 && len(got) != 0:
			t.Errorf("round %d: %s has no commit but timers %v", round, stream, got)
		case head > 0 && (len(got) != 1 || got[0].DueAt.Nanosecond() != int(head)):
			t.Errorf("round %d: %s at v%d has timers %v; want exactly the one its last commit set", round, stream, head, got)
		}
	}
	t.Logf("round %d: %d streams, %d pending outbox entries, every acknowledged write there", round, crashWriters, len(pending))
}
