package mongo

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/sync/errgroup"

	"github.com/sagaflow/sagaflow/store"
)

// Reads use _id lookups wherever they can: FerretDB's SQLite backend
// pushes only _id equality down to SQL and scans for anything else. So a
// stream's commits are read by their _ids (stream, version), in parallel
// up to the version its head names and one by one past it, until one is
// missing; versions have no gaps, so the first missing one is the end.

// head reads a stream's head (found false when it has none).
func (s *Store) head(ctx context.Context, stream string) (h headDoc, found bool, err error) {
	found, err = s.findByID(ctx, s.heads, "read stream head", stream, &h)
	return h, found, err
}

// commitAt reads the commit at (stream, v).
func (s *Store) commitAt(ctx context.Context, stream string, v uint64) (doc commitDoc, found bool, err error) {
	found, err = s.findByID(ctx, s.commits, "read commit", commitID(stream, v), &doc)
	return doc, found, err
}

// Load returns the commits of stream with version >= from, in order (an
// empty slice for a stream without commits).
func (s *Store) Load(ctx context.Context, stream string, from uint64) ([]store.Commit, error) {
	var out []store.Commit
	err := s.read(ctx, "load", func(ctx context.Context) error {
		var err error
		out, err = s.load(ctx, stream, from)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load %s from v%d: %w", stream, from, err)
	}
	return out, nil
}

func (s *Store) load(ctx context.Context, stream string, from uint64) ([]store.Commit, error) {
	out := []store.Commit{}
	from = max(from, 1)
	h, _, err := s.head(ctx, stream)
	if err != nil {
		return nil, err
	}
	next := from
	if last := uint64(max(h.Version, 0)); last >= from {
		docs := make([]commitDoc, last-from+1)
		found := make([]bool, len(docs))
		eg, ectx := errgroup.WithContext(ctx)
		eg.SetLimit(readConcurrency)
		for i := range docs {
			eg.Go(func() error {
				var err error
				docs[i], found[i], err = s.commitAt(ectx, stream, from+uint64(i))
				return err
			})
		}
		if err := eg.Wait(); err != nil {
			return nil, err
		}
		for i, doc := range docs {
			if !found[i] {
				return nil, fmt.Errorf("commit v%d is missing below the head v%d", from+uint64(i), last)
			}
			c, err := decodeCommit(doc)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		next = last + 1
	}
	for ; ; next++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		doc, found, err := s.commitAt(ctx, stream, next)
		if err != nil {
			return nil, err
		}
		if !found {
			return out, nil
		}
		c, err := decodeCommit(doc)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

// Handled reports whether stream has handled message msgID (I3), and the
// version of the commit that recorded it. It reads the message's marker
// and, when there is none, the stream's last commit, whose markers may not
// be written yet (see doc.go).
func (s *Store) Handled(ctx context.Context, stream, msgID string) (uint64, bool, error) {
	var version uint64
	var ok bool
	err := s.read(ctx, "handled", func(ctx context.Context) error {
		var m handledDoc
		found, err := s.findByID(ctx, s.handled, "read handled marker", handledID(stream, msgID), &m)
		if err != nil {
			return err
		}
		if found {
			version, ok = uint64(m.Version), true
			return nil
		}
		last, found, err := s.lastCommit(ctx, stream)
		if err != nil || !found {
			return err
		}
		for _, h := range last.Handled {
			if h == msgID {
				version, ok = uint64(last.Version), true
			}
		}
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("handled %s by %s: %w", msgID, stream, err)
	}
	return version, ok, nil
}

// lastCommit reads the stream's last commit: the one at its head's version
// or, when commits exist past the head, the last of those.
func (s *Store) lastCommit(ctx context.Context, stream string) (commitDoc, bool, error) {
	h, _, err := s.head(ctx, stream)
	if err != nil {
		return commitDoc{}, false, err
	}
	var last commitDoc
	found := false
	v := uint64(max(h.Version, 1))
	for ; ; v++ {
		if err := ctx.Err(); err != nil {
			return commitDoc{}, false, err
		}
		doc, ok, err := s.commitAt(ctx, stream, v)
		if err != nil {
			return commitDoc{}, false, err
		}
		if !ok {
			return last, found, nil
		}
		last, found = doc, true
	}
}

// Info returns a stream's version and latest Meta (store.ErrNotFound for a
// stream without commits). It starts at the stream's head and looks past
// it for commits whose derived documents are not written yet.
func (s *Store) Info(ctx context.Context, stream string) (store.StreamInfo, error) {
	var info store.StreamInfo
	err := s.read(ctx, "info", func(ctx context.Context) error {
		h, found, err := s.head(ctx, stream)
		if err != nil {
			return err
		}
		info = store.StreamInfo{Stream: stream}
		if found {
			if info, err = decodeHead(h); err != nil {
				return err
			}
		}
		for v := info.Version + 1; ; v++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			doc, ok, err := s.commitAt(ctx, stream, v)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			c, err := decodeCommit(doc)
			if err != nil {
				return err
			}
			info.Version = v
			if c.Meta != nil {
				info.Meta = *c.Meta
			}
		}
		if info.Version == 0 {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return store.StreamInfo{}, fmt.Errorf("info %s: %w", stream, err)
	}
	return info, nil
}

func decodeHead(h headDoc) (store.StreamInfo, error) {
	info := store.StreamInfo{Stream: h.ID, Version: uint64(max(h.Version, 0))}
	if len(h.Meta) > 0 {
		if err := json.Unmarshal(h.Meta, &info.Meta); err != nil {
			return store.StreamInfo{}, fmt.Errorf("stream %s: decode meta: %w", h.ID, err)
		}
	}
	return info, nil
}

// List returns the streams whose Meta matches f, ordered by name, from
// their heads. A Limit of 0 means 100; limits above 10000 mean 10000.
func (s *Store) List(ctx context.Context, f store.ListFilter) ([]store.StreamInfo, error) {
	out := []store.StreamInfo{}
	err := s.read(ctx, "list", func(ctx context.Context) error {
		filter := bson.D{}
		if f.Kind != "" {
			filter = append(filter, bson.E{Key: "kind", Value: f.Kind})
		}
		if f.Type != "" {
			filter = append(filter, bson.E{Key: "type", Value: f.Type})
		}
		if len(f.Status) > 0 {
			filter = append(filter, bson.E{Key: "status", Value: bson.D{{Key: "$in", Value: f.Status}}})
		}
		if f.After != "" {
			filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: f.After}}})
		}
		var heads []headDoc
		if err := s.findAll(ctx, s.heads, filter, &heads, options.Find().
			SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(readLimit(f.Limit)))); err != nil {
			return err
		}
		out = out[:0]
		for _, h := range heads {
			info, err := decodeHead(h)
			if err != nil {
				return err
			}
			out = append(out, info)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list streams after %q: %w", f.After, err)
	}
	return out, nil
}

// findAll runs a find and decodes every result into out (retried).
//
// Every find here has a limit, and the first batch is asked to hold all
// of it, so the server keeps no cursor open for a getMore. The cursor is
// closed with a context of its own: cur.All closes it with ctx, which has
// expired when the find timed out, and a cursor left open on the server
// holds one of FerretDB's SQLite connections until it times out there
// (minutes). Under load enough such cursors exhaust the dev server's pool
// and it stops answering altogether.
func (s *Store) findAll(ctx context.Context, coll *mongo.Collection, filter bson.D, out any, opts ...options.Lister[options.FindOptions]) error {
	opts = append(opts, &firstBatchHoldsTheLimit{})
	return s.retry(ctx, "find in "+coll.Name(), func(ctx context.Context) error {
		cur, err := coll.Find(ctx, filter, opts...)
		if err != nil {
			return err
		}
		defer closeCursor(cur)
		return cur.All(ctx, out)
	})
}

// closeCursor closes cur on the server, with a short context of its own
// (see findAll).
func closeCursor(cur *mongo.Cursor) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = cur.Close(ctx)
}

// firstBatchHoldsTheLimit sets a find's batch size to its limit (when it
// has one), so the first batch is the whole answer and no cursor stays
// open on the server.
type firstBatchHoldsTheLimit struct{}

// List implements options.Lister.
func (*firstBatchHoldsTheLimit) List() []func(*options.FindOptions) error {
	return []func(*options.FindOptions) error{func(o *options.FindOptions) error {
		if o.Limit != nil && *o.Limit > 0 && o.BatchSize == nil {
			b := int32(min(*o.Limit, 1<<20))
			o.BatchSize = &b
		}
		return nil
	}}
}

// PendingOutbox returns up to limit pending outbox entries whose commits
// were made at or before olderThan, oldest commit first, a commit's
// messages in order (I4). A limit of 0 or less means 100; limits above
// 10000 mean 10000.
func (s *Store) PendingOutbox(ctx context.Context, olderThan time.Time, limit int) ([]store.OutboxEntry, error) {
	out := []store.OutboxEntry{}
	err := s.read(ctx, "pending outbox", func(ctx context.Context) error {
		s.sweepJournal(ctx)
		var docs []outboxDoc
		if err := s.findAll(ctx, s.outbox, bson.D{{Key: "at", Value: bson.D{{Key: "$lte", Value: nanos(olderThan)}}}}, &docs,
			options.Find().SetSort(bson.D{{Key: "at", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(int64(readLimit(limit)))); err != nil {
			return err
		}
		out = out[:0]
		for _, d := range docs {
			var e store.OutboxEntry
			if err := json.Unmarshal(d.Entry, &e); err != nil {
				return fmt.Errorf("decode outbox entry %s: %w", d.ID, err)
			}
			if e.At.After(olderThan) {
				continue // same clamped key, later time
			}
			s.outboxIDs.remember(e.ID, d.ID) // MarkDispatched deletes it by _id
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pending outbox up to %s: %w", olderThan.Format(time.RFC3339Nano), err)
	}
	return out, nil
}

// DueTimers returns up to limit timers due at or before now, earliest first
// (I5). A limit of 0 or less means 100; limits above 10000 mean 10000.
func (s *Store) DueTimers(ctx context.Context, now time.Time, limit int) ([]store.Timer, error) {
	out := []store.Timer{}
	err := s.read(ctx, "due timers", func(ctx context.Context) error {
		s.sweepJournal(ctx)
		var docs []timerDoc
		if err := s.findAll(ctx, s.timers, bson.D{{Key: "due", Value: bson.D{{Key: "$lte", Value: nanos(now)}}}}, &docs,
			options.Find().SetSort(bson.D{{Key: "due", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(int64(readLimit(limit)))); err != nil {
			return err
		}
		out = out[:0]
		for _, d := range docs {
			var t store.Timer
			if err := json.Unmarshal(d.Timer, &t); err != nil {
				return fmt.Errorf("decode timer %s: %w", d.ID, err)
			}
			if t.DueAt.After(now) {
				continue
			}
			out = append(out, t)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("due timers at %s: %w", now.Format(time.RFC3339Nano), err)
	}
	return out, nil
}

// NextTimer returns the earliest due time of any timer (ok false when there
// is none).
func (s *Store) NextTimer(ctx context.Context) (time.Time, bool, error) {
	var t store.Timer
	var ok bool
	err := s.read(ctx, "next timer", func(ctx context.Context) error {
		var docs []timerDoc
		if err := s.findAll(ctx, s.timers, bson.D{}, &docs,
			options.Find().SetSort(bson.D{{Key: "due", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(1)); err != nil {
			return err
		}
		ok = len(docs) > 0
		if !ok {
			return nil
		}
		if err := json.Unmarshal(docs[0].Timer, &t); err != nil {
			return fmt.Errorf("decode timer %s: %w", docs[0].ID, err)
		}
		return nil
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next timer: %w", err)
	}
	return t.DueAt, ok, nil
}

// LoadSnapshot returns the stream's latest snapshot (ok false when it has
// none).
func (s *Store) LoadSnapshot(ctx context.Context, stream string) (store.Snapshot, bool, error) {
	var snap store.Snapshot
	var ok bool
	err := s.read(ctx, "load snapshot", func(ctx context.Context) error {
		var d snapshotDoc
		found, err := s.findByID(ctx, s.snapshots, "read snapshot", stream, &d)
		if err != nil || !found {
			ok = false
			return err
		}
		if err := json.Unmarshal(d.Data, &snap); err != nil {
			return fmt.Errorf("decode snapshot: %w", err)
		}
		ok = true
		return nil
	})
	if err != nil {
		return store.Snapshot{}, false, fmt.Errorf("load snapshot of %s: %w", stream, err)
	}
	return snap, ok, nil
}
