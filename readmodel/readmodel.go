package readmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors; test for them with errors.Is.
var (
	// ErrNotFound: no document with that model and key.
	ErrNotFound = errors.New("read-model document not found")
	// ErrOutOfOrder: an event is not the next one of its stream (an
	// earlier one has not been applied yet).
	ErrOutOfOrder = errors.New("event out of order")
	// ErrInvalid: a malformed argument (empty model or key, sequence 0,
	// a body that is not a JSON object).
	ErrInvalid = errors.New("invalid read-model request")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("read-model store closed")
)

// Doc is one read-model document.
type Doc struct {
	// Model names the read model (the projection that builds it).
	Model string `json:"model"`
	// Key identifies the document within its model.
	Key string `json:"key"`
	// Body is the document, a JSON object.
	Body json.RawMessage `json:"body"`
	// Version counts the changes this document has had since it was
	// created (1 for the first Put).
	Version uint64 `json:"version"`
	// Position is the model's change-log position of its latest change.
	Position uint64 `json:"position"`
	// Stream and Seq name the event whose handling made the latest change.
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	// UpdatedAt is when that change was written.
	UpdatedAt time.Time `json:"updated_at"`
}

// Change is one entry of a model's change log: a document put or deleted.
type Change struct {
	// Position numbers the model's changes densely from 1; it keeps
	// counting across Drop, so a client's last position stays meaningful
	// through a rebuild.
	Position uint64 `json:"position"`
	// Model and Key name the document.
	Model string `json:"model"`
	Key   string `json:"key"`
	// Deleted is true when the change removed the document; Body is then empty.
	Deleted bool `json:"deleted,omitempty"`
	// Body is the document after the change.
	Body json.RawMessage `json:"body,omitempty"`
	// Version is the document's Version after the change (0 when deleted).
	Version uint64 `json:"version"`
	// Stream and Seq name the event that caused it.
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	// At is when it was written.
	At time.Time `json:"at"`
}

// Write is one document change an Update makes: a put of Body, or a
// delete.
type Write struct {
	Key     string
	Body    json.RawMessage
	Deleted bool
}

// Tx is what an Update's function sees: the model's documents as they are
// before the event, with its own writes on top. It is valid only during
// the call.
type Tx interface {
	// Get returns the document with key (ok false when there is none or
	// it was deleted in this Tx).
	Get(ctx context.Context, key string) (doc Doc, ok bool, err error)
	// Put sets the document with key to body (a JSON object).
	Put(key string, body json.RawMessage) error
	// Delete removes the document with key (a no-op when there is none).
	Delete(key string) error
}

// Result says what an Update did.
type Result struct {
	// Applied is false when the event was at or below the checkpoint (a
	// duplicate): nothing was written and the function was not called.
	Applied bool
	// Changes are the change-log entries written (empty for an event that
	// changed no document).
	Changes []Change
}

// Store keeps read models. Implementations are safe for concurrent use;
// Updates of one model are serialized within a process.
type Store interface {
	// Update applies event seq of stream to model: when seq is at or
	// below the (model, stream) checkpoint it does nothing and returns
	// Applied false; when seq is beyond checkpoint+1 it fails with
	// ErrOutOfOrder; otherwise it calls fn, then writes fn's document
	// changes, their change-log entries and the checkpoint seq at once
	// (I1). An error from fn writes nothing and is returned.
	Update(ctx context.Context, model, stream string, seq uint64, fn func(ctx context.Context, tx Tx) error) (Result, error)
	// Get returns one document (ErrNotFound when missing).
	Get(ctx context.Context, model, key string) (Doc, error)
	// List returns up to limit documents of model whose key sorts after
	// after, in key order (limit <= 0 means 100; at most 10000).
	List(ctx context.Context, model, after string, limit int) ([]Doc, error)
	// Checkpoint returns the sequence of the last event of stream that
	// model reflects (0 when none).
	Checkpoint(ctx context.Context, model, stream string) (uint64, error)
	// Changes returns up to limit change-log entries of model with
	// Position > after, in order, and the oldest position the log still
	// holds (0 when it is empty): entries older than that were trimmed.
	Changes(ctx context.Context, model string, after uint64, limit int) (changes []Change, oldest uint64, err error)
	// Head returns the latest change-log position of model (0 when it
	// never changed); it survives Drop.
	Head(ctx context.Context, model string) (uint64, error)
	// Drop removes every document and checkpoint of model and its change
	// log; the change-log position keeps counting from where it was.
	Drop(ctx context.Context, model string) error
	// Close releases the store.
	Close() error
}

// Limits shared by the implementations.
const (
	// DefaultListLimit is List's limit when none is given.
	DefaultListLimit = 100
	// MaxListLimit caps List's and Changes' limit.
	MaxListLimit = 10000
	// DefaultLogSize is how many change-log entries a model keeps.
	DefaultLogSize = 10000
	// MaxBodyBytes caps an encoded document body.
	MaxBodyBytes = 4 << 20
)

// ClampLimit applies the List and Changes limit rules.
func ClampLimit(limit int) int {
	if limit <= 0 {
		return DefaultListLimit
	}
	return min(limit, MaxListLimit)
}

// ValidName checks a model, key or stream name: not empty, at most 512
// bytes, no NUL or '|' (the implementations join names with them).
func ValidName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	case len(s) > 512:
		return fmt.Errorf("%w: %s is %d bytes, at most 512", ErrInvalid, what, len(s))
	case strings.ContainsAny(s, "\x00|"):
		return fmt.Errorf("%w: %s %q contains NUL or '|'", ErrInvalid, what, s)
	}
	return nil
}

// ValidBody checks that body is one JSON object of at most MaxBodyBytes.
func ValidBody(key string, body json.RawMessage) error {
	if len(body) > MaxBodyBytes {
		return fmt.Errorf("%w: body of %q is %d bytes, at most %d", ErrInvalid, key, len(body), MaxBodyBytes)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return fmt.Errorf("%w: body of %q is not a JSON object", ErrInvalid, key)
	}
	return nil
}

// CheckUpdate validates Update's arguments.
func CheckUpdate(model, stream string, seq uint64) error {
	if err := ValidName("model", model); err != nil {
		return err
	}
	if err := ValidName("stream", stream); err != nil {
		return err
	}
	if seq == 0 {
		return fmt.Errorf("%w: sequence 0 for stream %s (sequences start at 1)", ErrInvalid, stream)
	}
	return nil
}
