package participant

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

// Deduper remembers which commands a service has handled and what it
// answered, keyed by (consumer, message ID) (I3). The service provides
// it; the best one lives in the service's own database, so that the
// record is written in the same transaction as the handler's change.
//
// A reply with an empty ID means the command asked for no reply (it had no
// reply-to header); it is recorded all the same.
type Deduper interface {
	// Seen returns the reply recorded when consumer handled msgID, and
	// whether it did.
	Seen(ctx context.Context, consumer, msgID string) (reply message.Envelope, ok bool, err error)
	// Once runs apply, which makes the service's change and returns the
	// reply, and records (consumer, msgID, reply) atomically with that
	// change: both are kept or neither is. The context apply gets is the
	// one the handler gets, so an implementation can put its transaction
	// in it. When apply fails nothing is recorded and its error is
	// returned. When the message turns out to be recorded already (a
	// concurrent delivery won), Once returns an error wrapping
	// ErrDuplicate and the caller answers with Seen's reply.
	Once(ctx context.Context, consumer, msgID string, apply func(ctx context.Context) (message.Envelope, error)) (message.Envelope, error)
}

// MemoryDeduper is a Deduper in memory, for tests and examples. It forgets
// everything when the process ends and cannot undo a change when it finds
// a duplicate, so it is no guard in production. Its zero value is ready.
type MemoryDeduper struct {
	mu      sync.Mutex
	handled map[string]message.Envelope
	inbox   memoryInbox
}

// NewMemoryDeduper returns an empty MemoryDeduper.
func NewMemoryDeduper() *MemoryDeduper { return &MemoryDeduper{} }

func memoryKey(consumer, msgID string) string { return consumer + "\x00" + msgID }

// Seen implements Deduper.
func (m *MemoryDeduper) Seen(_ context.Context, consumer, msgID string) (message.Envelope, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.handled[memoryKey(consumer, msgID)]
	return r, ok, nil
}

// Once implements Deduper.
func (m *MemoryDeduper) Once(ctx context.Context, consumer, msgID string, apply func(ctx context.Context) (message.Envelope, error)) (message.Envelope, error) {
	if _, ok, _ := m.Seen(ctx, consumer, msgID); ok {
		return message.Envelope{}, fmt.Errorf("%s by %s: %w", msgID, consumer, ErrDuplicate)
	}
	reply, err := apply(ctx)
	if err != nil {
		return message.Envelope{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := memoryKey(consumer, msgID)
	if _, ok := m.handled[k]; ok {
		return message.Envelope{}, fmt.Errorf("%s by %s: %w", msgID, consumer, ErrDuplicate)
	}
	if m.handled == nil {
		m.handled = make(map[string]message.Envelope)
	}
	m.handled[k] = reply
	return reply, nil
}

// Len returns how many messages are recorded.
func (m *MemoryDeduper) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.handled)
}

// StoreDeduper is a Deduper on any store.Store (embedded bbolt, MongoDB):
// each handled message is one commit, at version 1 of the stream
// DedupeStream(consumer, msgID), holding the message ID as handled and the
// reply as its one event. Racing deliveries of one message both try to
// write that commit; the store lets one win (I2) and the other gets
// ErrDuplicate.
//
// The record is atomic on its own, but it is not written in the same
// transaction as the change the handler makes in another database: a
// crash after the change and before the record runs the handler again
// when the command is redelivered. Use it for handlers whose change is
// idempotent (or itself kept in the same store), and implement Deduper on
// the service's database otherwise.
type StoreDeduper struct {
	st  store.Store
	now func() time.Time
}

// NewStoreDeduper returns a Deduper that records in st.
func NewStoreDeduper(st store.Store) *StoreDeduper {
	return &StoreDeduper{st: st, now: time.Now}
}

// DedupeStream names the stream that records consumer's handling of msgID.
func DedupeStream(consumer, msgID string) string {
	return "participant/" + consumer + "/" + msgID
}

// Seen implements Deduper.
func (s *StoreDeduper) Seen(ctx context.Context, consumer, msgID string) (message.Envelope, bool, error) {
	stream := DedupeStream(consumer, msgID)
	commits, err := s.st.Load(ctx, stream, 1)
	if err != nil {
		return message.Envelope{}, false, fmt.Errorf("dedupe: load %s: %w", stream, err)
	}
	if len(commits) == 0 {
		return message.Envelope{}, false, nil
	}
	if len(commits[0].Events) == 0 {
		return message.Envelope{}, true, nil // handled, no reply asked for
	}
	return commits[0].Events[0], true, nil
}

// Once implements Deduper.
func (s *StoreDeduper) Once(ctx context.Context, consumer, msgID string, apply func(ctx context.Context) (message.Envelope, error)) (message.Envelope, error) {
	reply, err := apply(ctx)
	if err != nil {
		return message.Envelope{}, err
	}
	stream := DedupeStream(consumer, msgID)
	c := store.Commit{Stream: stream, Version: 1, Handled: []string{msgID}, At: s.now()}
	if reply.ID != "" {
		c.Events = []message.Envelope{reply}
	}
	if err := s.st.Append(ctx, c); err != nil {
		if errors.Is(err, store.ErrConcurrency) || errors.Is(err, store.ErrAlreadyHandled) {
			return message.Envelope{}, fmt.Errorf("dedupe: record %s: %w", stream, ErrDuplicate)
		}
		return message.Envelope{}, fmt.Errorf("dedupe: record %s: %w", stream, err)
	}
	return reply, nil
}
