package transporttest

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// poisoner returns a recorder that dead-letters every delivery while
// poison holds, and acks it otherwise.
func poisoner(poison *atomic.Bool) *recorder {
	return &recorder{settle: func(ctx context.Context, d transport.Delivery) error {
		if poison.Load() {
			return d.DeadLetter(ctx, errors.New("transporttest: poisoned"))
		}
		return d.Ack(ctx)
	}}
}

// settleUntil calls settle with ids until it has returned every one of
// want (a concurrent browse of a shared broker may hide a letter for a
// moment), and returns what each call returned, joined.
func (s *suite) settleUntil(t *testing.T, what string, settle func([]string) ([]string, error), ids, want []string) []string {
	t.Helper()
	var got []string
	var lastErr error
	within(s.f.RedeliveryTimeout, func() bool {
		done, err := settle(ids)
		got = append(got, done...)
		lastErr = err
		for _, id := range want {
			if !slices.Contains(got, id) {
				return false
			}
		}
		return true
	})
	if lastErr != nil {
		t.Fatalf("%s(%v): %v", what, ids, lastErr)
	}
	for _, id := range want {
		if !slices.Contains(got, id) {
			t.Fatalf("%s(%v) returned %v within %v, want %v", what, ids, got, s.f.RedeliveryTimeout, want)
		}
	}
	return got
}

// requireNoDeadLetter fails unless, within RedeliveryTimeout, DeadLetters
// stops listing message id.
func (s *suite) requireNoDeadLetter(t *testing.T, ctx context.Context, tr transport.Transport, id string) {
	t.Helper()
	if !within(s.f.RedeliveryTimeout, func() bool {
		dls, err := tr.DeadLetters(ctx, deadLetterScan)
		return err == nil && !slices.ContainsFunc(dls, func(dl transport.DeadLetter) bool { return dl.Message.ID == id })
	}) {
		t.Fatalf("message %s is still among the dead letters", id)
	}
}

// testDeadLetterReplay: ReplayDeadLetters puts a dead letter back on the
// queue and partition it came from as a fresh message (Attempt 1, the
// envelope unchanged) and removes it from the dead letters; an event goes
// back only to the subscriber that dead-lettered it; IDs that are not dead
// letters are left out of the result; replaying again finds nothing.
func (s *suite) testDeadLetterReplay(t *testing.T) {
	ctx, tr := s.setup(t)
	typ := s.eventType("Replayed")
	q := s.declare(t, ctx, tr, "replay", typ)
	bystander := s.declare(t, ctx, tr, "bystander", typ)
	cmd := command(q, s.name("key"))
	ev := envelope(message.KindEvent, typ, "", s.name("key"))
	mustPublish(t, ctx, tr, cmd)
	mustPublish(t, ctx, tr, ev)

	var poison atomic.Bool
	poison.Store(true)
	r := poisoner(&poison)
	s.consume(t, ctx, tr, q, 4, r)
	by := acker()
	s.consume(t, ctx, tr, bystander, 4, by)
	s.waitFor(t, r, 2, "messages to dead-letter")
	s.waitFor(t, by, 1, "event on the bystander queue")
	s.findDeadLetter(t, ctx, tr, cmd.ID)
	s.findDeadLetter(t, ctx, tr, ev.ID)
	r.requireNoSettleErrors(t)
	poison.Store(false)

	unknown := message.NewID()
	ids := []string{cmd.ID, ev.ID, unknown}
	got := s.settleUntil(t, "ReplayDeadLetters", func(ids []string) ([]string, error) { return tr.ReplayDeadLetters(ctx, ids) }, ids, []string{cmd.ID, ev.ID})
	if slices.Contains(got, unknown) {
		t.Errorf("ReplayDeadLetters returned %s, which was never dead-lettered", unknown)
	}
	all := s.waitFor(t, r, 4, "replayed messages")
	for _, want := range []message.Envelope{cmd, ev} {
		i := slices.IndexFunc(all[2:], func(d transport.Delivery) bool { return d.Envelope().ID == want.ID })
		if i < 0 {
			t.Fatalf("replayed message %s not delivered again", want.ID)
		}
		d := all[2+i]
		requireEnvelope(t, "replayed message", d.Envelope(), want)
		if d.Attempt() != 1 {
			t.Errorf("replayed message %s: Attempt = %d, want 1", want.ID, d.Attempt())
		}
		if p := transport.Partition(want.Key, s.f.Partitions); d.Partition() != p {
			t.Errorf("replayed message %s: Partition = %d, want %d", want.ID, d.Partition(), p)
		}
	}
	r.requireNoSettleErrors(t)
	s.requireNoDeadLetter(t, ctx, tr, cmd.ID)
	s.requireNoDeadLetter(t, ctx, tr, ev.ID)
	time.Sleep(s.f.QuietPeriod)
	if n := by.count(); n != 1 {
		t.Errorf("the bystander subscriber got the event %d times, want once: a replay goes back to the dead-lettering queue only", n)
	}
	if n := r.count(); n != 4 {
		t.Errorf("%d deliveries on the replay queue, want 4 (2, then 2 replays)", n)
	}
	again, err := tr.ReplayDeadLetters(ctx, []string{cmd.ID})
	if err != nil || len(again) != 0 {
		t.Errorf("ReplayDeadLetters of a replayed message = %v, %v; want nothing", again, err)
	}
}

// testDeadLetterDiscard: DiscardDeadLetters removes the dead letters named
// and only those; nothing is delivered again.
func (s *suite) testDeadLetterDiscard(t *testing.T) {
	ctx, tr := s.setup(t)
	q := s.declare(t, ctx, tr, "discard")
	gone, kept := command(q, s.name("key")), command(q, s.name("key"))
	mustPublish(t, ctx, tr, gone)
	mustPublish(t, ctx, tr, kept)
	var poison atomic.Bool
	poison.Store(true)
	r := poisoner(&poison)
	s.consume(t, ctx, tr, q, 4, r)
	s.waitFor(t, r, 2, "messages to dead-letter")
	s.findDeadLetter(t, ctx, tr, gone.ID)
	s.findDeadLetter(t, ctx, tr, kept.ID)
	poison.Store(false)

	got := s.settleUntil(t, "DiscardDeadLetters", func(ids []string) ([]string, error) { return tr.DiscardDeadLetters(ctx, ids) }, []string{gone.ID}, []string{gone.ID})
	if len(got) != 1 {
		t.Errorf("DiscardDeadLetters returned %v, want [%s]", got, gone.ID)
	}
	s.requireNoDeadLetter(t, ctx, tr, gone.ID)
	s.findDeadLetter(t, ctx, tr, kept.ID)
	time.Sleep(s.f.QuietPeriod)
	if n := r.count(); n != 2 {
		t.Errorf("%d deliveries after a discard, want 2: a discarded letter is not delivered again", n)
	}
	// Clean up the kept letter so a shared broker's dead letters stay small.
	s.settleUntil(t, "DiscardDeadLetters", func(ids []string) ([]string, error) { return tr.DiscardDeadLetters(ctx, ids) }, []string{kept.ID}, []string{kept.ID})
}
