package transporttest

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// testConsumerHandover: while one consumer is active a second one stands
// by; when the first one's context is cancelled, its unsettled deliveries
// go to the second, in order, and can no longer be settled through the old
// deliveries.
func (s *suite) testConsumerHandover(t *testing.T) {
	ctx, tr := s.setup(t)
	q := s.declare(t, ctx, tr, "handover")
	key := s.name("key")
	var sent []message.Envelope
	for range 3 {
		e := command(q, key)
		mustPublish(t, ctx, tr, e)
		sent = append(sent, e)
	}
	rA := holder()
	a := s.consume(t, ctx, tr, q, 4, rA)
	s.waitFor(t, rA, len(sent), "first consumer")

	rB := acker()
	s.consume(t, ctx, tr, q, 4, rB)
	time.Sleep(s.f.QuietPeriod)
	if n := rB.count(); n != 0 {
		t.Fatalf("standby consumer got %d deliveries while the first one was active, want none", n)
	}
	if err := a.stop(s.f.RedeliveryTimeout); err != nil {
		t.Fatalf("Consume after its context was cancelled = %v, want nil", err)
	}
	got := s.waitFor(t, rB, len(sent), "standby consumer after the first one stopped")
	rB.requireNoSettleErrors(t)
	for i, e := range sent {
		if got[i].Envelope().ID != e.ID {
			t.Fatalf("standby delivery %d is %s, want %s: order lost in the handover", i, got[i].Envelope().ID, e.ID)
		}
		if got[i].Attempt() < 2 {
			t.Errorf("redelivery of %s has Attempt %d, want at least 2", e.ID, got[i].Attempt())
		}
		requireEnvelope(t, "handed-over message", got[i].Envelope(), e)
	}
	if err := rA.deliveries()[0].Ack(ctx); err == nil {
		t.Errorf("Ack through the stopped consumer's delivery succeeded; the message was already handed over")
	}
	time.Sleep(s.f.QuietPeriod)
	if n := rB.count(); n != len(sent) {
		t.Fatalf("standby consumer got %d deliveries, want %d", n, len(sent))
	}
}

// testKeyOrder: messages published concurrently by several publishers on
// many keys reach the consumer exactly once each, and each publisher's
// messages of one key in the order it published them.
func (s *suite) testKeyOrder(t *testing.T) {
	const publishers, perPublisher, keys = 4, 150, 20
	ctx, tr := s.setup(t)
	q := s.declare(t, ctx, tr, "order")
	keyNames := make([]string, keys)
	for i := range keyNames {
		keyNames[i] = s.name("key")
	}
	r := acker()
	s.consume(t, ctx, tr, q, 8, r)

	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perPublisher {
				e := command(q, keyNames[(i+p)%keys])
				e.SetHeader("tt-publisher", strconv.Itoa(p))
				e.SetHeader("tt-seq", strconv.Itoa(i))
				if err := tr.Publish(ctx, e); err != nil {
					errs <- fmt.Errorf("publisher %d, message %d: %w", p, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := publishers * perPublisher
	uniqueCount := func() int {
		ids := map[string]bool{}
		for _, d := range r.deliveries() {
			ids[d.Envelope().ID] = true
		}
		return len(ids)
	}
	if !within(s.f.RedeliveryTimeout, func() bool { return uniqueCount() >= total }) {
		t.Fatalf("%d of %d messages delivered after %v", uniqueCount(), total, s.f.RedeliveryTimeout)
	}
	time.Sleep(s.f.QuietPeriod)
	r.requireNoSettleErrors(t)

	type stream struct{ publisher, key string }
	last := map[stream]int{}
	seen := map[string]int{}
	outOfOrder := 0
	for _, d := range r.deliveries() {
		e := d.Envelope()
		seen[e.ID]++
		if seen[e.ID] > 1 {
			t.Errorf("message %s delivered %d times, want once", e.ID, seen[e.ID])
			continue
		}
		if p := transport.Partition(e.Key, s.f.Partitions); d.Partition() != p {
			t.Errorf("message %s of key %s came from partition %d, want %d", e.ID, e.Key, d.Partition(), p)
		}
		st := stream{e.Header("tt-publisher"), e.Key}
		seq, err := strconv.Atoi(e.Header("tt-seq"))
		if err != nil {
			t.Fatalf("message %s lost its tt-seq header: %v", e.ID, err)
		}
		if prev, ok := last[st]; ok && seq <= prev {
			if outOfOrder++; outOfOrder <= 5 {
				t.Errorf("publisher %s, key %s: message %d delivered after message %d", st.publisher, st.key, seq, prev)
			}
		}
		last[st] = seq
	}
	if outOfOrder > 0 {
		t.Fatalf("%d of %d messages were delivered after a later message of their publisher and key", outOfOrder, total)
	}
}

// testPrefetch: with prefetch P and a handler that settles nothing, each
// partition has at most P deliveries outstanding, every partition with
// messages delivers, and settling one lets the next one through.
func (s *suite) testPrefetch(t *testing.T) {
	const prefetch, perPartition = 2, 5
	ctx, tr := s.setup(t)
	q := s.declare(t, ctx, tr, "prefetch")
	// Find keys on up to three different partitions.
	byPart := map[int]string{}
	for i := 0; len(byPart) < min(3, s.f.Partitions) && i < 10_000; i++ {
		k := s.name("key")
		p := transport.Partition(k, s.f.Partitions)
		if _, ok := byPart[p]; !ok {
			byPart[p] = k
		}
	}
	for _, k := range byPart {
		for range perPartition {
			mustPublish(t, ctx, tr, command(q, k))
		}
	}
	r := holder()
	s.consume(t, ctx, tr, q, prefetch, r)
	s.waitFor(t, r, 1, "first delivery")
	within(s.f.RedeliveryTimeout, func() bool { return r.count() >= prefetch*len(byPart) })
	time.Sleep(s.f.QuietPeriod)
	count := func() map[int][]transport.Delivery {
		per := map[int][]transport.Delivery{}
		for _, d := range r.deliveries() {
			p := transport.Partition(d.Envelope().Key, s.f.Partitions)
			per[p] = append(per[p], d)
		}
		return per
	}
	per := count()
	for p := range byPart {
		if n := len(per[p]); n > prefetch {
			t.Fatalf("partition %d has %d unsettled deliveries, prefetch is %d", p, n, prefetch)
		}
		if len(per[p]) == 0 {
			t.Fatalf("partition %d delivered nothing while the others held their prefetch", p)
		}
	}
	// Settling one delivery frees a slot in its partition only.
	var p0 int
	for p := range byPart {
		p0 = p
		break
	}
	before := len(per[p0])
	mustSettle(t, "Ack", per[p0][0].Ack(ctx))
	if !within(s.f.RedeliveryTimeout, func() bool { return len(count()[p0]) > before }) {
		t.Fatalf("partition %d delivered nothing after one of its deliveries was acked", p0)
	}
	time.Sleep(s.f.QuietPeriod)
	if n := len(count()[p0]) - 1; n > prefetch {
		t.Fatalf("partition %d has %d unsettled deliveries after an ack, prefetch is %d", p0, n, prefetch)
	}
}
