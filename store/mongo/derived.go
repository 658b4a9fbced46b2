package mongo

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sagaflow/sagaflow/internal/recordjson"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

// MarkDispatched deletes the pending outbox entries of the given message
// IDs (I4); unknown IDs are ignored. The entries this store wrote or
// listed are deleted by _id; the others by message ID, which FerretDB
// answers with a scan of the (small: pending only) outbox.
func (s *Store) MarkDispatched(ctx context.Context, ids ...string) error {
	err := s.read(ctx, "mark dispatched", func(ctx context.Context) error {
		docIDs, unknown := s.outboxIDs.take(ids)
		if err := s.deleteByIDs(ctx, s.outbox, "delete outbox entries", docIDs); err != nil {
			return err
		}
		return s.deleteByField(ctx, s.outbox, "msg", unknown)
	})
	if err != nil {
		return fmt.Errorf("mark %d outbox entries dispatched: %w", len(ids), err)
	}
	return nil
}

// DeleteTimers deletes fired timers (I5); unknown IDs are ignored.
func (s *Store) DeleteTimers(ctx context.Context, ids ...string) error {
	err := s.read(ctx, "delete timers", func(ctx context.Context) error {
		return s.deleteByIDs(ctx, s.timers, "delete timers", ids)
	})
	if err != nil {
		return fmt.Errorf("delete %d timers: %w", len(ids), err)
	}
	return nil
}

// deleteByField deletes the documents whose field is one of ids, in
// chunks (retried; deleting is idempotent).
func (s *Store) deleteByField(ctx context.Context, coll *mongo.Collection, field string, ids []string) error {
	for len(ids) > 0 {
		n := min(len(ids), maxIDsPerDelete)
		chunk := ids[:n]
		ids = ids[n:]
		err := s.retry(ctx, "delete from "+coll.Name(), func(ctx context.Context) error {
			_, err := coll.DeleteMany(ctx, bson.D{{Key: field, Value: bson.D{{Key: "$in", Value: chunk}}}})
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// SaveSnapshot stores snap as its stream's snapshot unless the stream has
// one at a later version: it reads the stored snapshot's version by _id,
// then replaces the snapshot by _id (see idwrites.go). Two racing saves
// may leave the older one; a snapshot is then older than it could be,
// never wrong.
func (s *Store) SaveSnapshot(ctx context.Context, snap store.Snapshot) error {
	if err := s.saveSnapshot(ctx, snap); err != nil {
		return fmt.Errorf("save snapshot of %s at v%d: %w", snap.Stream, snap.Version, err)
	}
	return nil
}

func (s *Store) saveSnapshot(ctx context.Context, snap store.Snapshot) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := store.ValidateSnapshot(snap); err != nil {
		return err
	}
	if snap.Version > 1<<63-1 {
		return fmt.Errorf("%w: version %d is beyond the store's range", store.ErrInvalidCommit, snap.Version)
	}
	data, err := recordjson.Marshal(snap)
	if err != nil {
		return fmt.Errorf("%w: encode snapshot: %w", store.ErrInvalidCommit, err)
	}
	if len(data) > maxDocBytes {
		return fmt.Errorf("%w: %w: encoded snapshot is %d bytes, limit %d",
			store.ErrInvalidCommit, message.ErrPayloadTooLarge, len(data), maxDocBytes)
	}
	doc := snapshotDoc{ID: snap.Stream, Version: int64(snap.Version), Data: data}
	return s.read(ctx, "save snapshot", func(ctx context.Context) error {
		stored, err := s.storedVersions(ctx, s.snapshots, "read snapshot version", []string{snap.Stream})
		if err != nil {
			return err
		}
		if v, ok := stored[snap.Stream]; ok && v > doc.Version {
			return nil // a newer snapshot is stored
		}
		return s.retry(ctx, "upsert snapshot", func(ctx context.Context) error {
			_, err := s.snapshots.ReplaceOne(ctx, bson.D{{Key: "_id", Value: snap.Stream}}, doc, options.Replace().SetUpsert(true))
			if mongo.IsDuplicateKeyError(err) {
				return nil // a racing save inserted it
			}
			return err
		})
	})
}

// sweepJournal repairs journal entries older than the grace period, at
// most once per sweepEvery, so that a writer that died between its
// commits and their derived documents loses nothing while other stores
// keep running. Errors are logged: the sweep is retried later.
func (s *Store) sweepJournal(ctx context.Context) {
	now := time.Now()
	if last := s.lastSweep.Load(); now.UnixNano()-last < int64(sweepEvery) {
		return
	}
	if !s.sweepMu.TryLock() {
		return
	}
	defer s.sweepMu.Unlock()
	s.lastSweep.Store(now.UnixNano())
	if err := s.repairJournal(ctx, now.Add(-s.cfg.journalGrace)); err != nil {
		s.log.Warn("journal repair failed; retried later", "err", err)
	}
}

// repairJournal finishes the group commits of journal entries made at or
// before olderThan: it writes again the derived documents of each listed
// commit that exists, then deletes the entry. Derived writes are
// idempotent, but an outbox entry or timer that was dispatched or deleted
// in between comes back once; consumers absorb the duplicate (I3).
func (s *Store) repairJournal(ctx context.Context, olderThan time.Time) error {
	var entries []journalDoc
	if err := s.findAll(ctx, s.journal, bson.D{{Key: "at", Value: bson.D{{Key: "$lte", Value: nanos(olderThan)}}}}, &entries,
		options.Find().SetSort(bson.D{{Key: "at", Value: 1}}).SetLimit(1000)); err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	for _, e := range entries {
		var ds []derived
		for _, id := range e.IDs {
			var doc commitDoc
			found, err := s.findByID(ctx, s.commits, "read journaled commit", id, &doc)
			if err != nil {
				return fmt.Errorf("repair journal entry %s: %w", e.ID, err)
			}
			if !found {
				continue // refused, or never written
			}
			c, err := decodeCommit(doc)
			if err != nil {
				return fmt.Errorf("repair journal entry %s: %w", e.ID, err)
			}
			d, err := derive(c)
			if err != nil {
				return fmt.Errorf("repair journal entry %s: commit %s: %w", e.ID, id, err)
			}
			ds = append(ds, d)
			// Later commits' cancellations go after it again.
			for v := c.Version + 1; ; v++ {
				later, found, err := s.commitAt(ctx, c.Stream, v)
				if err != nil {
					return fmt.Errorf("repair journal entry %s: %w", e.ID, err)
				}
				if !found {
					break
				}
				lc, err := decodeCommit(later)
				if err != nil {
					return fmt.Errorf("repair journal entry %s: %w", e.ID, err)
				}
				if len(lc.CancelTimers) > 0 {
					ds = append(ds, derived{stream: lc.Stream, version: lc.Version, cancel: lc.CancelTimers, cancelOnly: true})
				}
			}
		}
		if err := s.writeDerived(ctx, ds); err != nil {
			return fmt.Errorf("repair journal entry %s: %w", e.ID, err)
		}
		if err := s.retry(ctx, "delete journal entry", func(ctx context.Context) error {
			_, err := s.journal.DeleteOne(ctx, bson.D{{Key: "_id", Value: e.ID}})
			return err
		}); err != nil {
			return fmt.Errorf("repair journal entry %s: %w", e.ID, err)
		}
		s.log.Info("repaired an unfinished group commit", "journal", e.ID, "commits", len(ds))
	}
	return nil
}
