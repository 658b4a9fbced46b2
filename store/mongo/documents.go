package mongo

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/sagaflow/sagaflow/internal/recordjson"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

// Collection names.
const (
	collCommits   = "commits"
	collHandled   = "handled"
	collOutbox    = "outbox"
	collTimers    = "timers"
	collHeads     = "heads"
	collJournal   = "journal"
	collSnapshots = "snapshots"
)

// commitDoc is one commit: the only document a state change writes (I1).
// Its _id is the natural key (stream, version), so the primary key is the
// uniqueness check (I2). The commit itself is kept as JSON, byte for byte;
// the other fields are what the store reads without decoding it.
type commitDoc struct {
	ID      string   `bson:"_id"`
	Stream  string   `bson:"stream"`
	Version int64    `bson:"v"`
	Handled []string `bson:"handled,omitempty"`
	// Token is random per Append call; it tells a retried insert that hit
	// its own earlier success from a real conflict.
	Token string `bson:"w"`
	// At is the commit time (sortable nanoseconds).
	At   int64  `bson:"at"`
	Data []byte `bson:"c"`
}

// handledDoc marks a message as handled by a stream (I3); derived from the
// commit that lists it.
type handledDoc struct {
	ID      string `bson:"_id"`
	Version int64  `bson:"v"`
}

// outboxDoc is a pending outbox entry (I4); derived from its commit and
// deleted by MarkDispatched.
type outboxDoc struct {
	ID    string `bson:"_id"`
	At    int64  `bson:"at"`
	MsgID string `bson:"msg"`
	Entry []byte `bson:"e"`
}

// timerDoc is a live timer (I5); derived from the commit that set it and
// deleted by a cancelling commit or DeleteTimers.
type timerDoc struct {
	ID    string `bson:"_id"`
	Due   int64  `bson:"due"`
	Timer []byte `bson:"t"`
}

// headDoc is a stream's version and latest Meta, for Info and List;
// derived, and possibly behind the commits (readers look past it).
type headDoc struct {
	ID      string `bson:"_id"`
	Version int64  `bson:"v"`
	Kind    string `bson:"kind,omitempty"`
	Type    string `bson:"type,omitempty"`
	Status  string `bson:"status,omitempty"`
	Meta    []byte `bson:"m,omitempty"`
}

// journalDoc lists the commits of one group commit whose derived
// documents may not be written yet. It is inserted before the commits and
// deleted after their derived documents; one left behind is repaired.
type journalDoc struct {
	ID  string   `bson:"_id"`
	IDs []string `bson:"ids"`
	At  int64    `bson:"at"`
}

// snapshotDoc is a stream's latest snapshot.
type snapshotDoc struct {
	ID      string `bson:"_id"`
	Version int64  `bson:"v"`
	Data    []byte `bson:"s"`
}

// streamKey escapes '%' and '|' in a stream name, so that the '|' that
// ends it in a key is unambiguous: no two (stream, rest) pairs share a key.
var streamKey = strings.NewReplacer("%", "%25", "|", "%7C").Replace

func commitID(stream string, version uint64) string {
	return fmt.Sprintf("%s|%020d", streamKey(stream), version)
}

func handledID(stream, msgID string) string { return streamKey(stream) + "|" + msgID }

func outboxDocID(stream string, version uint64, i int) string {
	return fmt.Sprintf("%s|%06d", commitID(stream, version), i)
}

// nanos maps t to an int64 that sorts like t, clamped where UnixNano is
// undefined.
func nanos(t time.Time) int64 {
	switch {
	case t.Before(minNanoTime):
		return math.MinInt64
	case t.After(maxNanoTime):
		return math.MaxInt64
	default:
		return t.UnixNano()
	}
}

var (
	minNanoTime = time.Unix(0, math.MinInt64)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// derived is everything a commit implies beyond its own document.
type derived struct {
	stream  string
	version uint64
	handled []any // handledDoc
	outbox  []any // outboxDoc
	timers  []timerDoc
	cancel  []string
	meta    *store.Meta
	metaRaw []byte
	// headIsOurs: this writer wrote the head of the version before, so
	// the head is not read before it is replaced (see writeHeads). Set by
	// the writer for the commits it inserted, never by the repair.
	headIsOurs bool
	// cancelOnly: the repair re-applies only cancel (a later commit's
	// cancellations, so that a repaired commit cannot bring back a timer
	// that a later commit cancelled).
	cancelOnly bool
}

// head is the head document naming version v of d's stream with d's Meta.
func (d *derived) head(v uint64) headDoc {
	return headDoc{ID: d.stream, Version: int64(v), Kind: d.meta.Kind, Type: d.meta.Type, Status: d.meta.Status, Meta: d.metaRaw}
}

// encodedCommit is a commit ready for the writer: encoded on the caller's
// goroutine, sharing nothing with the caller's Commit.
type encodedCommit struct {
	doc     commitDoc
	derived derived
}

// encodeCommit checks what this store needs beyond store.ValidateCommit
// and encodes c.
func encodeCommit(c store.Commit, token string) (*encodedCommit, error) {
	if c.Version > math.MaxInt64 {
		return nil, fmt.Errorf("%w: version %d is beyond the store's range", store.ErrInvalidCommit, c.Version)
	}
	data, err := recordjson.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("%w: encode: %w", store.ErrInvalidCommit, err)
	}
	if len(data) > maxDocBytes {
		return nil, fmt.Errorf("%w: %w: encoded commit is %d bytes, limit %d",
			store.ErrInvalidCommit, message.ErrPayloadTooLarge, len(data), maxDocBytes)
	}
	d, err := derive(c)
	if err != nil {
		return nil, err
	}
	return &encodedCommit{
		doc: commitDoc{
			ID:      commitID(c.Stream, c.Version),
			Stream:  c.Stream,
			Version: int64(c.Version),
			Handled: append([]string(nil), c.Handled...),
			Token:   token,
			At:      nanos(c.At),
			Data:    data,
		},
		derived: d,
	}, nil
}

// derive computes the derived documents of c. The repair of a journal
// entry calls it on a commit read back from the store.
func derive(c store.Commit) (derived, error) {
	d := derived{stream: c.Stream, version: c.Version, cancel: append([]string(nil), c.CancelTimers...)}
	for _, id := range c.Handled {
		d.handled = append(d.handled, handledDoc{ID: handledID(c.Stream, id), Version: int64(c.Version)})
	}
	for i, m := range c.Outbox {
		e, err := recordjson.Marshal(store.OutboxEntry{ID: m.ID, Stream: c.Stream, Version: c.Version, Message: m, At: c.At})
		if err != nil {
			return derived{}, fmt.Errorf("%w: encode outbox message %q: %w", store.ErrInvalidCommit, m.ID, err)
		}
		d.outbox = append(d.outbox, outboxDoc{ID: outboxDocID(c.Stream, c.Version, i), At: nanos(c.At), MsgID: m.ID, Entry: e})
	}
	for _, t := range c.Timers {
		v, err := recordjson.Marshal(t)
		if err != nil {
			return derived{}, fmt.Errorf("%w: encode timer %q: %w", store.ErrInvalidCommit, t.ID, err)
		}
		d.timers = append(d.timers, timerDoc{ID: t.ID, Due: nanos(t.DueAt), Timer: v})
	}
	if c.Meta != nil {
		m, err := recordjson.Marshal(c.Meta)
		if err != nil {
			return derived{}, fmt.Errorf("%w: encode meta: %w", store.ErrInvalidCommit, err)
		}
		meta := *c.Meta
		d.meta, d.metaRaw = &meta, m
	}
	return d, nil
}

// decodeCommit decodes a commit document.
func decodeCommit(doc commitDoc) (store.Commit, error) {
	var c store.Commit
	if err := json.Unmarshal(doc.Data, &c); err != nil {
		return store.Commit{}, fmt.Errorf("decode commit %s: %w", doc.ID, err)
	}
	return c, nil
}
