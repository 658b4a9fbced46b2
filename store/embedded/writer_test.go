package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

// These tests drive commitBatch directly, so that they control exactly
// which requests share one transaction.

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func testCommit(stream string, v uint64, handled ...string) store.Commit {
	return store.Commit{
		Stream:  stream,
		Version: v,
		Events: []message.Envelope{{
			ID: stream + "/evt/" + string(rune('0'+v)), Kind: message.KindEvent, Type: "test.Happened.v1",
			Key: stream, Sequence: v, Payload: json.RawMessage(`{"v":1}`),
		}},
		Outbox: []message.Envelope{{
			ID: stream + "/out/" + string(rune('0'+v)) + "/" + strings.Join(handled, ","), Kind: message.KindEvent,
			Type: "test.Happened.v1", Key: stream, Payload: json.RawMessage(`{}`),
		}},
		Handled: handled,
		At:      time.Date(2030, 1, 1, 0, 0, int(v), 0, time.UTC),
	}
}

func appendReq(t *testing.T, s *Store, ctx context.Context, c store.Commit) *request {
	t.Helper()
	enc, err := s.encodeCommit(c)
	if err != nil {
		t.Fatalf("encode %s v%d: %v", c.Stream, c.Version, err)
	}
	return &request{ctx: ctx, op: opAppend, commit: enc, done: make(chan error, 1)}
}

// answers returns the error each request was answered with.
func answers(batch []*request) []error {
	out := make([]error, len(batch))
	for i, r := range batch {
		select {
		case out[i] = <-r.done:
		default:
			out[i] = errors.New("no answer")
		}
	}
	return out
}

func loadVersions(t *testing.T, s *Store, stream string) []string {
	t.Helper()
	cs, err := s.Load(t.Context(), stream, 0)
	if err != nil {
		t.Fatalf("Load(%s): %v", stream, err)
	}
	var out []string
	for _, c := range cs {
		out = append(out, c.Outbox[0].ID)
	}
	return out
}

func TestBatchChecksEachRequestAgainstTheOnesBeforeIt(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()

	batch := []*request{
		appendReq(t, s, ctx, testCommit("s", 1, "m1")),                                           // 0: written
		appendReq(t, s, ctx, testCommit("s", 1, "other")),                                        // 1: v1 taken by 0
		appendReq(t, s, ctx, testCommit("s", 2, "m1")),                                           // 2: m1 handled by 0
		appendReq(t, s, ctx, testCommit("s", 2, "m2")),                                           // 3: written
		appendReq(t, s, ctx, testCommit("t", 2)),                                                 // 4: gap
		appendReq(t, s, cancelled, testCommit("u", 1)),                                           // 5: caller gave up
		{ctx: ctx, op: opMarkDispatched, ids: []string{"s/out/1/m1"}, done: make(chan error, 1)}, // 6
		appendReq(t, s, ctx, testCommit("t", 1)),                                                 // 7: written
	}
	before := s.Stats()
	s.commitBatch(batch)
	got := answers(batch)
	want := []error{nil, store.ErrConcurrency, store.ErrAlreadyHandled, nil, store.ErrInvalidCommit, context.Canceled, nil, nil}
	for i := range want {
		if !errors.Is(got[i], want[i]) {
			t.Errorf("request %d answered %v, want %v", i, got[i], want[i])
		}
	}
	if after := s.Stats(); after.Batches != before.Batches+1 || after.Commits != before.Commits+3 {
		t.Errorf("stats went from %+v to %+v, want one batch with three commits", before, after)
	}
	if after := s.Stats(); after.Busy <= before.Busy || after.WALBytes <= before.WALBytes ||
		after.SyncWait <= before.SyncWait || after.SyncWait-before.SyncWait > after.Busy-before.Busy {
		t.Errorf("writer time went from %+v to %+v, want busy time, WAL bytes, and a sync wait within the busy time", before, after)
	}
	if v := loadVersions(t, s, "s"); strings.Join(v, " ") != "s/out/1/m1 s/out/2/m2" {
		t.Errorf("stream s has commits %v", v)
	}
	if v := loadVersions(t, s, "u"); len(v) != 0 {
		t.Errorf("cancelled request was written: %v", v)
	}
	pending, err := s.PendingOutbox(ctx, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range pending {
		ids = append(ids, e.ID)
	}
	if strings.Join(ids, " ") != "t/out/1/ s/out/2/m2" {
		t.Errorf("pending outbox = %v, want t/out/1/ and s/out/2/m2 (s/out/1/m1 dispatched in the same batch)", ids)
	}
}

func TestBatchDropsARequestWhoseWriteFailsAndCommitsTheRest(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	broken := appendReq(t, s, ctx, testCommit("b", 1, "h"))
	// A handled key the store refuses, past the checks: the commit itself
	// is already put when it fails, so the batch must be dropped.
	broken.commit.handledKeys = [][]byte{make([]byte, maxKeySize+1)}
	batch := []*request{
		appendReq(t, s, ctx, testCommit("a", 1)),
		broken,
		appendReq(t, s, ctx, testCommit("c", 1)),
	}
	s.commitBatch(batch)
	got := answers(batch)
	if got[0] != nil || got[2] != nil {
		t.Fatalf("healthy requests answered %v and %v, want nil", got[0], got[2])
	}
	if !errors.Is(got[1], errKeyTooLarge) {
		t.Fatalf("broken request answered %v, want ErrKeyTooLarge", got[1])
	}
	if v := loadVersions(t, s, "b"); len(v) != 0 {
		t.Fatalf("the broken commit was half written: %v", v)
	}
	for _, stream := range []string{"a", "c"} {
		if v := loadVersions(t, s, stream); len(v) != 1 {
			t.Fatalf("stream %s has %d commits, want 1", stream, len(v))
		}
	}
}

// TestWriterReusesItsBatchEmptied: the writer's Pebble batch is given
// back empty after each round, a dropped request's writes included, and
// the next round uses it again.
func TestWriterReusesItsBatchEmptied(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	broken := appendReq(t, s, ctx, testCommit("b", 1, "h"))
	broken.commit.handledKeys = [][]byte{make([]byte, maxKeySize+1)}
	s.commitBatch([]*request{appendReq(t, s, ctx, testCommit("a", 1)), broken})
	first := s.roundBatch
	if first == nil || !first.Empty() {
		t.Fatalf("after a round the writer holds batch %v, want one emptied for reuse", first)
	}
	s.commitBatch([]*request{appendReq(t, s, ctx, testCommit("a", 2))})
	if s.roundBatch != first {
		t.Fatal("the next round used a new batch, want the writer's own again")
	}
	if !s.roundBatch.Empty() {
		t.Fatal("the reused batch was not emptied after its round")
	}
	if v := loadVersions(t, s, "a"); len(v) != 2 {
		t.Fatalf("stream a has %d commits, want 2", len(v))
	}
	if v := loadVersions(t, s, "b"); len(v) != 0 {
		t.Fatalf("the dropped request's writes reached the store through the reused batch: %v", v)
	}
}

func TestBatchPanicFailsTheWholeTransaction(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	batch := []*request{
		appendReq(t, s, ctx, testCommit("a", 1)),
		{ctx: ctx, op: opAppend, commit: nil, done: make(chan error, 1)}, // a bug: nil commit
	}
	s.commitBatch(batch)
	for i, err := range answers(batch) {
		if err == nil || !strings.Contains(err.Error(), "panic") {
			t.Errorf("request %d answered %v, want the transaction's panic", i, err)
		}
	}
	if v := loadVersions(t, s, "a"); len(v) != 0 {
		t.Fatalf("a request of the failed transaction was written: %v", v)
	}
	if st := s.Stats(); st.FailedTransactions != 1 {
		t.Fatalf("FailedTransactions = %d, want 1", st.FailedTransactions)
	}
	// The store still works.
	if err := s.Append(ctx, testCommit("a", 1)); err != nil {
		t.Fatalf("Append after a failed transaction: %v", err)
	}
}

func TestCloseAnswersQueuedWrites(t *testing.T) {
	s, err := Open(t.Context(), t.TempDir(), WithMaxBatch(4))
	if err != nil {
		t.Fatal(err)
	}
	const writers = 64
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			errs <- s.Append(t.Context(), testCommit("close/"+string(rune('A'+w)), 1))
		}()
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range writers {
		select {
		case err := <-errs:
			if err != nil && !errors.Is(err, store.ErrClosed) {
				t.Errorf("Append during Close = %v, want nil or ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("an Append did not return after Close")
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestStoreRejectsWhatItsKeysCannotHold(t *testing.T) {
	s := openTest(t)
	tests := []struct {
		name string
		c    store.Commit
	}{
		{"StreamWithZeroByte", testCommit("a\x00b", 1)},
		{"StreamTooLong", testCommit(strings.Repeat("s", maxKeySize), 1)},
		{"HandledIDTooLong", testCommit("s", 1, strings.Repeat("h", maxKeySize))},
	}
	for _, tc := range tests {
		if err := s.Append(t.Context(), tc.c); !errors.Is(err, store.ErrInvalidCommit) {
			t.Errorf("%s: Append = %v, want ErrInvalidCommit", tc.name, err)
		}
	}
	big := testCommit("big", 1)
	big.Events[0].Payload = json.RawMessage(`"` + strings.Repeat("x", DefaultMaxCommitBytes) + `"`)
	if err := s.Append(t.Context(), big); !errors.Is(err, store.ErrInvalidCommit) || !errors.Is(err, message.ErrPayloadTooLarge) {
		t.Errorf("oversized commit: Append = %v, want ErrInvalidCommit and ErrPayloadTooLarge", err)
	}
	// A reader cannot reach another stream through a 0x00 in the name.
	if err := s.Append(t.Context(), testCommit("a", 1)); err != nil {
		t.Fatal(err)
	}
	if cs, err := s.Load(t.Context(), "a\x00", 0); err != nil || len(cs) != 0 {
		t.Errorf("Load(\"a\\x00\") = %d commits, %v; want none", len(cs), err)
	}
}

func TestOpenRefusesAForeignFormat(t *testing.T) {
	dir := t.TempDir()
	if err := openIn(t, dir).Close(); err != nil {
		t.Fatal(err)
	}
	setRaw(t, dir, bucket{prefix: prefixInfo}.key(formatKey), []byte("99"))
	wantRefused(t, dir, `"99"`, `"`+FormatVersion+`"`)
}

// TestRoundsStopFillingAtTheirByteBudget: a queue of large commits is
// taken in rounds of about maxRoundBytes each (so that the writer's batch
// stays small enough for Pebble to keep its buffer), every request once,
// in queue order; small requests fill a round up to maxBatch.
func TestRoundsStopFillingAtTheirByteBudget(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	const n = 64
	reqs := make(chan *request, n)
	var queued []*request
	for i := range n {
		c := testCommit(fmt.Sprintf("big-%02d", i), 1)
		c.Events[0].Payload = json.RawMessage(`"` + strings.Repeat("x", 32<<10) + `"`)
		r := appendReq(t, s, ctx, c)
		if r.size() < 32<<10 {
			t.Fatalf("size of a commit of 32 KiB is %d", r.size())
		}
		queued = append(queued, r)
		reqs <- r
	}
	var got []*request
	rounds := 0
	for len(reqs) > 0 {
		round := takeRound(reqs, []*request{<-reqs}, 512)
		bytes := 0
		for _, r := range round[:len(round)-1] {
			bytes += r.size()
		}
		if bytes >= maxRoundBytes {
			t.Fatalf("round %d went on filling past %d bytes (%d before its last request)", rounds, maxRoundBytes, bytes)
		}
		got = append(got, round...)
		rounds++
	}
	if want := n * (32 << 10) / maxRoundBytes; rounds < want {
		t.Errorf("%d rounds for %d KiB of commits, want at least %d", rounds, n*32, want)
	}
	for i := range queued {
		if got[i] != queued[i] {
			t.Fatalf("request %d taken out of order", i)
		}
	}

	small := make(chan *request, 10)
	for range 10 {
		small <- &request{op: opMarkDispatched, ids: []string{"m"}}
	}
	if round := takeRound(small, []*request{<-small}, 4); len(round) != 4 {
		t.Errorf("a round of small requests took %d, want maxBatch 4", len(round))
	}
}
