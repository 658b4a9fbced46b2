package participant

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

// ErrAccepted says a command is in the inbox already (a redelivery of one
// accepted before): Inbox.Accept wraps it, and the delivery is acked
// without queueing the command again.
var ErrAccepted = errors.New("participant: command already accepted")

// Inbox keeps the commands a participant accepted and has not answered
// yet. When the Deduper also implements Inbox (MemoryDeduper and
// StoreDeduper do), the participant acks each delivery as soon as its
// command is accepted and runs the handler after, from the inbox: a
// handler that runs longer than the broker's consumer timeout (RabbitMQ
// closes the channel of a delivery not acked within it, 30 minutes by
// default) then holds no delivery, and a command queued behind a slow one
// holds none either. The commands still pending when the process stops
// are run again by the next Run (I4: nothing is lost; the Deduper's
// record absorbs a command run twice).
type Inbox interface {
	// Accept keeps cmd as pending for consumer, durably. Accepting a
	// command accepted before fails with an error wrapping ErrAccepted.
	Accept(ctx context.Context, consumer string, cmd message.Envelope) error
	// Pending returns consumer's accepted commands that are not finished,
	// oldest first.
	Pending(ctx context.Context, consumer string) ([]message.Envelope, error)
	// Finish marks consumer's command msgID as answered. Finishing one
	// that is finished or unknown does nothing.
	Finish(ctx context.Context, consumer, msgID string) error
}

var (
	_ Inbox = (*MemoryDeduper)(nil)
	_ Inbox = (*StoreDeduper)(nil)
)

// memoryInbox is MemoryDeduper's inbox.
type memoryInbox struct {
	mu      sync.Mutex
	seen    map[string]bool // accepted, finished or not
	pending []memoryPending
}

type memoryPending struct {
	key string
	cmd message.Envelope
}

// Accept implements Inbox.
func (m *MemoryDeduper) Accept(_ context.Context, consumer string, cmd message.Envelope) error {
	in := &m.inbox
	in.mu.Lock()
	defer in.mu.Unlock()
	k := memoryKey(consumer, cmd.ID)
	if in.seen[k] {
		return fmt.Errorf("%s by %s: %w", cmd.ID, consumer, ErrAccepted)
	}
	if in.seen == nil {
		in.seen = make(map[string]bool)
	}
	in.seen[k] = true
	in.pending = append(in.pending, memoryPending{key: k, cmd: cmd.Clone()})
	return nil
}

// Pending implements Inbox.
func (m *MemoryDeduper) Pending(_ context.Context, consumer string) ([]message.Envelope, error) {
	in := &m.inbox
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []message.Envelope
	for _, p := range in.pending {
		if p.key == memoryKey(consumer, p.cmd.ID) {
			out = append(out, p.cmd.Clone())
		}
	}
	return out, nil
}

// Finish implements Inbox.
func (m *MemoryDeduper) Finish(_ context.Context, consumer, msgID string) error {
	in := &m.inbox
	in.mu.Lock()
	defer in.mu.Unlock()
	k := memoryKey(consumer, msgID)
	for i, p := range in.pending {
		if p.key == k {
			in.pending = append(in.pending[:i], in.pending[i+1:]...)
			break
		}
	}
	return nil
}

// Inbox streams of StoreDeduper: version 1 holds the accepted command,
// version 2 marks it finished; the stream's Meta (kind InboxKind, type the
// consumer, status "pending" or "done") lets Pending list them.
const (
	// InboxKind is the Meta kind of StoreDeduper's inbox streams.
	InboxKind     = "participant-inbox"
	inboxPending  = "pending"
	inboxFinished = "done"
)

// InboxStream names the stream that keeps consumer's accepted command msgID.
func InboxStream(consumer, msgID string) string {
	return InboxKind + "/" + consumer + "/" + msgID
}

// Accept implements Inbox.
func (s *StoreDeduper) Accept(ctx context.Context, consumer string, cmd message.Envelope) error {
	stream := InboxStream(consumer, cmd.ID)
	now := s.now()
	c := store.Commit{
		Stream: stream, Version: 1, Events: []message.Envelope{cmd}, Handled: []string{cmd.ID}, At: now,
		Meta: &store.Meta{Kind: InboxKind, Type: consumer, Status: inboxPending, CreatedAt: now, UpdatedAt: now},
	}
	if err := s.st.Append(ctx, c); err != nil {
		if errors.Is(err, store.ErrConcurrency) || errors.Is(err, store.ErrAlreadyHandled) {
			return fmt.Errorf("inbox: accept %s: %w", stream, ErrAccepted)
		}
		return fmt.Errorf("inbox: accept %s: %w", stream, err)
	}
	return nil
}

// Pending implements Inbox.
func (s *StoreDeduper) Pending(ctx context.Context, consumer string) ([]message.Envelope, error) {
	var (
		out   []message.Envelope
		after string
	)
	for {
		page, err := s.st.List(ctx, store.ListFilter{Kind: InboxKind, Type: consumer, Status: []string{inboxPending}, After: after, Limit: 500})
		if err != nil {
			return nil, fmt.Errorf("inbox: list pending of %s: %w", consumer, err)
		}
		for _, info := range page {
			commits, err := s.st.Load(ctx, info.Stream, 1)
			if err != nil {
				return nil, fmt.Errorf("inbox: load %s: %w", info.Stream, err)
			}
			if len(commits) == 1 && len(commits[0].Events) == 1 { // version 2 would mean finished
				out = append(out, commits[0].Events[0])
			}
		}
		if len(page) < 500 {
			return out, nil
		}
		after = page[len(page)-1].Stream
	}
}

// Finish implements Inbox.
func (s *StoreDeduper) Finish(ctx context.Context, consumer, msgID string) error {
	stream := InboxStream(consumer, msgID)
	now := s.now()
	c := store.Commit{
		Stream: stream, Version: 2, At: now,
		Meta: &store.Meta{Kind: InboxKind, Type: consumer, Status: inboxFinished, UpdatedAt: now},
	}
	if err := s.st.Append(ctx, c); err != nil {
		if errors.Is(err, store.ErrConcurrency) || errors.Is(err, store.ErrInvalidCommit) {
			return nil // finished before, or never accepted
		}
		return fmt.Errorf("inbox: finish %s: %w", stream, err)
	}
	return nil
}
