package store

import (
	"context"
	"errors"
	"time"

	"github.com/sagaflow/sagaflow/message"
)

// Sentinel errors; test for them with errors.Is.
var (
	// ErrConcurrency: a commit already exists at that stream version. The
	// writer's view is stale: reload the stream and decide again.
	ErrConcurrency = errors.New("concurrency conflict")
	// ErrAlreadyHandled: the commit names a message the stream has already
	// handled. Nothing was written; acknowledge the message.
	ErrAlreadyHandled = errors.New("message already handled")
	// ErrNotFound: no such stream, commit or record.
	ErrNotFound = errors.New("not found")
	// ErrInvalidCommit: a commit is malformed (empty stream, version 0, ...).
	ErrInvalidCommit = errors.New("invalid commit")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store closed")
	// ErrUnavailable: the backing database cannot be reached after the
	// retry budget; the caller should not acknowledge its input.
	ErrUnavailable = errors.New("store unavailable")
	// ErrUnsupportedFormat: the database was written in a stored format
	// this release does not read (a later release's, or an unknown one).
	// Open fails fast with it, naming both versions; nothing is changed.
	// Such a database needs a release that reads its format, or a
	// migration.
	ErrUnsupportedFormat = errors.New("unsupported stored format (needs a migration or a release that reads it)")
)

// Commit is one atomic state change of one stream: the events it records,
// the messages it emits, the messages it consumed, and the timers it sets
// or cancels. Version is the commit's position in its stream, starting at 1;
// a writer that loaded version v appends v+1.
type Commit struct {
	// Stream names the stream, for example "agg/inventory/order-17" or
	// "saga/0192...".
	Stream string `json:"stream"`
	// Version is this commit's number within the stream (1, 2, ...).
	Version uint64 `json:"version"`
	// Events are the domain events recorded by this commit; their Sequence
	// fields continue the stream's event numbering without gaps.
	Events []message.Envelope `json:"events,omitempty"`
	// Outbox are the messages to publish once the commit is durable.
	Outbox []message.Envelope `json:"outbox,omitempty"`
	// Handled are the IDs of the messages this commit consumed (I3).
	Handled []string `json:"handled,omitempty"`
	// Timers are durable timers to set (I5).
	Timers []Timer `json:"timers,omitempty"`
	// CancelTimers are IDs of timers to delete.
	CancelTimers []string `json:"cancel_timers,omitempty"`
	// Meta, when set, replaces the stream's searchable summary (see Meta).
	Meta *Meta `json:"meta,omitempty"`
	// At is when the commit was made.
	At time.Time `json:"at"`
}

// Meta is a stream's searchable summary, kept by the store from the latest
// commit that carries one. The engine lists sagas by it.
type Meta struct {
	// Kind groups streams: "saga" or "aggregate".
	Kind string `json:"kind"`
	// Type is the saga or aggregate type name.
	Type string `json:"type"`
	// Status is the saga's status ("running", "completed", ...).
	Status string `json:"status,omitempty"`
	// CorrelationID is the business correlation ID, if any.
	CorrelationID string `json:"correlation_id,omitempty"`
	// CreatedAt is when the stream's first commit was made.
	CreatedAt time.Time `json:"created_at"`
	// UpdatedAt is when the latest commit with a Meta was made.
	UpdatedAt time.Time `json:"updated_at"`
}

// StreamInfo is a stream's name, current version and summary.
type StreamInfo struct {
	Stream  string `json:"stream"`
	Version uint64 `json:"version"`
	Meta    Meta   `json:"meta"`
}

// Timer is a message to deliver at or after a due time. Firing a timer means
// publishing its Message and then deleting the timer; a crash in between
// publishes it again, which consumers absorb by message ID (I3).
type Timer struct {
	// ID identifies the timer, unique within the store.
	ID string `json:"id"`
	// Stream is the stream that set the timer.
	Stream string `json:"stream"`
	// DueAt is the earliest time the timer may fire.
	DueAt time.Time `json:"due_at"`
	// Message is delivered when the timer fires.
	Message message.Envelope `json:"message"`
}

// OutboxEntry is a pending outbox message with the commit that wrote it.
type OutboxEntry struct {
	// ID is the outbox entry's ID (the message ID).
	ID string `json:"id"`
	// Stream and Version name the commit that wrote the message.
	Stream  string `json:"stream"`
	Version uint64 `json:"version"`
	// Message is the message to publish.
	Message message.Envelope `json:"message"`
	// At is when the commit was made.
	At time.Time `json:"at"`
}

// ListFilter selects streams by their Meta. Zero fields match everything.
type ListFilter struct {
	// Kind, Type and Status must equal the Meta's fields when set.
	Kind   string
	Type   string
	Status []string
	// After is the cursor: only streams whose name sorts after it.
	After string
	// Limit caps the result (0 means 100).
	Limit int
}

// Streams reads and writes streams of commits.
type Streams interface {
	// Append writes c atomically (I1). It fails with ErrConcurrency when a
	// commit exists at c.Version, with ErrAlreadyHandled when one of
	// c.Handled was already recorded for c.Stream, and with
	// ErrInvalidCommit when c.Version is not the stream's next version or c
	// is malformed. On any error nothing of c is written.
	Append(ctx context.Context, c Commit) error
	// Load returns the commits of stream with version >= from, in order.
	// A stream with no commits gives an empty slice and no error.
	Load(ctx context.Context, stream string, from uint64) ([]Commit, error)
	// Handled reports whether stream has handled message msgID, and if so
	// the version of the commit that recorded it.
	Handled(ctx context.Context, stream, msgID string) (version uint64, ok bool, err error)
	// Info returns a stream's current version and summary (ErrNotFound when
	// it has no commits).
	Info(ctx context.Context, stream string) (StreamInfo, error)
	// List returns streams whose Meta matches f, ordered by stream name.
	List(ctx context.Context, f ListFilter) ([]StreamInfo, error)
}

// Outbox gives the relay the messages that commits wrote but nobody has
// confirmed publishing yet (I4).
type Outbox interface {
	// PendingOutbox returns up to limit pending entries, oldest first,
	// whose commits were made at or before olderThan.
	PendingOutbox(ctx context.Context, olderThan time.Time, limit int) ([]OutboxEntry, error)
	// MarkDispatched removes entries from the pending set. Unknown IDs are
	// ignored. It may be made durable lazily: a lost mark only causes a
	// duplicate publish, which consumers absorb (I3).
	MarkDispatched(ctx context.Context, ids ...string) error
}

// Timers gives the timer service the durable timers that are due (I5).
type Timers interface {
	// DueTimers returns up to limit timers with DueAt <= now, earliest first.
	DueTimers(ctx context.Context, now time.Time, limit int) ([]Timer, error)
	// NextTimer returns the earliest due time of any timer (ok false when
	// there are none).
	NextTimer(ctx context.Context) (due time.Time, ok bool, err error)
	// DeleteTimers removes fired timers. Unknown IDs are ignored.
	DeleteTimers(ctx context.Context, ids ...string) error
}

// Snapshot is a stream's state as of a commit version, saved so that a
// reader can start there instead of at the first commit: it loads the
// snapshot and then the commits from Version+1. Snapshots are derived data:
// they are written apart from commits, never as part of the commit write,
// and losing one only makes the next load longer.
type Snapshot struct {
	// Stream names the stream the state belongs to.
	Stream string `json:"stream"`
	// Version is the commit version the state includes (every commit up to
	// and including it).
	Version uint64 `json:"version"`
	// State is the encoded state; the store keeps it byte for byte.
	State []byte `json:"state"`
	// At is when the snapshot was taken.
	At time.Time `json:"at"`
}

// Snapshots keeps the latest snapshot of each stream.
type Snapshots interface {
	// SaveSnapshot stores s as its stream's snapshot unless the stream
	// already has one at a later version (an older save never replaces a
	// newer snapshot; saving at the same version replaces it). s.Stream must
	// be set and s.Version be at least 1 (ErrInvalidCommit otherwise).
	SaveSnapshot(ctx context.Context, s Snapshot) error
	// LoadSnapshot returns the stream's latest snapshot (ok false when it
	// has none).
	LoadSnapshot(ctx context.Context, stream string) (snap Snapshot, ok bool, err error)
}

// Store is everything the engine needs from persistence.
type Store interface {
	Streams
	Outbox
	Timers
	Snapshots
	Keys
	// Ping checks the store can serve requests (for readiness).
	Ping(ctx context.Context) error
	// Close releases the store; pending writes are finished or failed.
	Close() error
}
