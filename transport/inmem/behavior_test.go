package inmem_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
)

// What inmem promises beyond the conformance suite.

var quiet = slog.New(slog.DiscardHandler)

// waitUntil polls cond until it holds, failing the test after 5s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// run starts Consume in a goroutine; stop cancels it and returns its result.
func run(t *testing.T, tr *inmem.Transport, queue string, prefetch int, h transport.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Consume(ctx, queue, prefetch, h) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				err = errors.New("Consume did not return within 5s of its context ending")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// collect is a handler that keeps every delivery and settles none.
type collect struct {
	mu  sync.Mutex
	got []transport.Delivery
}

func (c *collect) handle(_ context.Context, d transport.Delivery) {
	c.mu.Lock()
	c.got = append(c.got, d)
	c.mu.Unlock()
}

func (c *collect) deliveries() []transport.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]transport.Delivery(nil), c.got...)
}

func cmd(dest, key string, n int) message.Envelope {
	return message.Envelope{
		ID: message.NewID(), Kind: message.KindCommand, Type: "test.Do.v1", Destination: dest,
		Key: key, OccurredAt: time.Now(), Payload: []byte(fmt.Sprintf(`{"n":%d}`, n)),
	}
}

func declare(t *testing.T, tr *inmem.Transport, name string) {
	t.Helper()
	if err := tr.Declare(context.Background(), transport.Queue{Name: name}); err != nil {
		t.Fatal(err)
	}
}

// A stopped consumer's unsettled deliveries go back in publish order, even
// when one of them was requeued and redelivered after a later one.
func TestHandoverRestoresPublishOrder(t *testing.T) {
	ctx := context.Background()
	tr := newTransport(t, inmem.WithPartitions(1))
	declare(t, tr, "q")
	var sent []string
	for i := range 3 {
		e := cmd("q", "k", i)
		sent = append(sent, e.ID)
		mustPublish(t, tr, e)
	}
	first := &collect{}
	stop := run(t, tr, "q", 2, first.handle)
	waitUntil(t, "two deliveries", func() bool { return len(first.deliveries()) == 2 })
	if err := first.deliveries()[0].Requeue(ctx, errors.New("again")); err != nil {
		t.Fatal(err)
	}
	// Now the first consumer holds message 1, then message 0 again.
	waitUntil(t, "the redelivery", func() bool { return len(first.deliveries()) == 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	next := &collect{}
	run(t, tr, "q", 3, next.handle)
	waitUntil(t, "the handover", func() bool { return len(next.deliveries()) == 3 })
	for i, d := range next.deliveries() {
		if d.Envelope().ID != sent[i] {
			t.Fatalf("after the handover delivery %d is %s, want %s (publish order)", i, d.Envelope().ID, sent[i])
		}
	}
	if a := next.deliveries()[0].Attempt(); a != 3 {
		t.Errorf("message 0 has Attempt %d after two deliveries, want 3", a)
	}
}

// The dead-letter list keeps the newest letters, counts the dropped ones
// and logs the 1st, 2nd, 4th... drop.
func TestDeadLetterRing(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	var logMu sync.Mutex
	tr := newTransport(t, inmem.WithDeadLetterCapacity(3), inmem.WithLogger(slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))))
	declare(t, tr, "q")
	var ids []string
	for i := range 8 {
		e := cmd("q", fmt.Sprint("k", i), i)
		ids = append(ids, e.ID)
		mustPublish(t, tr, e)
	}
	run(t, tr, "q", 8, func(ctx context.Context, d transport.Delivery) {
		_ = d.DeadLetter(ctx, errors.New("bad"))
	})
	warnings := func() (int, string) {
		logMu.Lock()
		defer logMu.Unlock()
		return strings.Count(logs.String(), "dead-letter list full"), logs.String()
	}
	// The warning is written just after the drop is counted: wait for both.
	waitUntil(t, "8 dead letters", func() bool { n, _ := warnings(); return tr.DroppedDeadLetters() == 5 && n >= 3 })
	dls, err := tr.DeadLetters(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 3 {
		t.Fatalf("%d dead letters kept, want the capacity, 3", len(dls))
	}
	// Partitions deliver concurrently, so which three are kept depends on
	// timing; they must be three distinct ones of ours, oldest first.
	seen := map[string]bool{}
	for i, dl := range dls {
		if seen[dl.Message.ID] || !strings.Contains(strings.Join(ids, " "), dl.Message.ID) {
			t.Fatalf("dead letter %d is %s: not one of ours, or twice", i, dl.Message.ID)
		}
		seen[dl.Message.ID] = true
		if i > 0 && dl.At.Before(dls[i-1].At) {
			t.Errorf("dead letters not oldest first: %s before %s", dls[i-1].At, dl.At)
		}
	}
	if two, _ := tr.DeadLetters(ctx, 2); len(two) != 2 || two[0].Message.ID != dls[0].Message.ID {
		t.Errorf("DeadLetters(2) = %d letters, want the 2 oldest", len(two))
	}
	if n, text := warnings(); n != 3 { // drops 1, 2 and 4 of 5
		t.Errorf("%d warnings for 5 drops, want 3 (the 1st, 2nd and 4th):\n%s", n, text)
	}

	// The caller's copy is its own.
	dls[0].Message.Payload[0] = 'X'
	again, _ := tr.DeadLetters(ctx, 1)
	if again[0].Message.Payload[0] == 'X' {
		t.Error("changing a returned dead letter changed the stored one")
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Without options: transport.DefaultPartitions partitions and
// DefaultDeliveryLimit deliveries.
func TestDefaults(t *testing.T) {
	ctx := context.Background()
	tr := inmem.New(inmem.WithLogger(quiet))
	t.Cleanup(func() { _ = tr.Close() })
	declare(t, tr, "q")
	e := cmd("q", "some-key", 0)
	mustPublish(t, tr, e)
	var mu sync.Mutex
	var parts, attempts []int
	run(t, tr, "q", 1, func(ctx context.Context, d transport.Delivery) {
		mu.Lock()
		parts, attempts = append(parts, d.Partition()), append(attempts, d.Attempt())
		mu.Unlock()
		_ = d.Requeue(ctx, errors.New("again"))
	})
	var dls []transport.DeadLetter
	waitUntil(t, "the dead letter", func() bool {
		dls, _ = tr.DeadLetters(ctx, 0)
		return len(dls) == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != inmem.DefaultDeliveryLimit || dls[0].Attempts != inmem.DefaultDeliveryLimit {
		t.Errorf("%d deliveries, dead letter Attempts %d; want DefaultDeliveryLimit = %d", len(attempts), dls[0].Attempts, inmem.DefaultDeliveryLimit)
	}
	if want := transport.Partition("some-key", transport.DefaultPartitions); parts[0] != want {
		t.Errorf("Partition() = %d, want %d of %d", parts[0], want, transport.DefaultPartitions)
	}
	if !strings.Contains(dls[0].Reason, "again") {
		t.Errorf("dead letter Reason = %q, want the last reason", dls[0].Reason)
	}
}

func TestConsumeRefusalsAndStandby(t *testing.T) {
	ctx := context.Background()
	tr := newTransport(t)
	declare(t, tr, "q")
	if err := tr.Consume(ctx, "q", 0, func(context.Context, transport.Delivery) {}); err == nil {
		t.Error("Consume with prefetch 0 succeeded")
	}
	if err := tr.Consume(ctx, "nope", 1, func(context.Context, transport.Delivery) {}); !errors.Is(err, transport.ErrUnroutable) {
		t.Errorf("Consume of an undeclared queue = %v, want ErrUnroutable", err)
	}
	if err := tr.Declare(ctx, transport.Queue{}); err == nil {
		t.Error("Declare of a queue without a name succeeded")
	}

	active := &collect{}
	run(t, tr, "q", 1, active.handle)
	mustPublish(t, tr, cmd("q", "k", 0))
	waitUntil(t, "the active consumer's delivery", func() bool { return len(active.deliveries()) == 1 })
	standby := &collect{}
	stopStandby := run(t, tr, "q", 1, standby.handle)
	mustPublish(t, tr, cmd("q", "k", 1))
	time.Sleep(10 * time.Millisecond) // give a wrong standby the chance to consume
	// A standby whose context ends returns nil without having consumed.
	if err := stopStandby(); err != nil {
		t.Errorf("standby Consume after its context ended = %v, want nil", err)
	}
	if n := len(standby.deliveries()); n != 0 {
		t.Errorf("standby got %d deliveries", n)
	}

	// Close ends a waiting standby with ErrClosed.
	waiting := make(chan error, 1)
	go func() { waiting <- tr.Consume(ctx, "q", 1, standby.handle) }()
	time.Sleep(10 * time.Millisecond) // let it reach the wait; the result is the same either way
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waiting:
		if !errors.Is(err, transport.ErrClosed) {
			t.Errorf("standby Consume after Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("standby Consume did not return after Close")
	}
	if err := tr.Declare(ctx, transport.Queue{Name: "q2"}); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Declare after Close = %v, want ErrClosed", err)
	}
	if err := active.deliveries()[0].Ack(ctx); !errors.Is(err, transport.ErrAlreadySettled) {
		t.Errorf("Ack after Close = %v, want ErrAlreadySettled (the delivery was revoked)", err)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

// Consume and Close leave no goroutine behind.
func TestNoGoroutinesLeft(t *testing.T) {
	before := runtime.NumGoroutine()
	tr := inmem.New(inmem.WithLogger(quiet), inmem.WithPartitions(8))
	for _, q := range []string{"a", "b"} {
		declare(t, tr, q)
		for i := range 20 {
			mustPublish(t, tr, cmd(q, fmt.Sprint("k", i), i))
		}
	}
	c := &collect{}
	stopA := run(t, tr, "a", 2, c.handle)
	run(t, tr, "b", 2, c.handle)
	run(t, tr, "b", 2, c.handle) // standby
	waitUntil(t, "deliveries", func() bool { return len(c.deliveries()) >= 4 })
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	var after int
	deadline := time.Now().Add(5 * time.Second)
	for after = runtime.NumGoroutine(); after > before && time.Now().Before(deadline); after = runtime.NumGoroutine() {
		time.Sleep(time.Millisecond)
	}
	if after > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after Close:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

func mustPublish(t *testing.T, tr transport.Transport, e message.Envelope) {
	t.Helper()
	if err := tr.Publish(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}
