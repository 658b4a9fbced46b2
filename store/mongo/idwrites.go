package mongo

import (
	"context"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/sync/errgroup"
)

// This file holds the writes that name documents by _id alone. FerretDB's
// SQLite backend pushes a filter down to SQL only when it is {_id: <string>};
// any other filter, {_id: {$in: [...]}} and {_id: x, v: {$lte: n}}
// included, makes it read and decode every document of the collection. So
// deletes are one {_id} delete per document, and the writes that must not
// move a document back to an older version (heads, snapshots) read the
// document by _id first and then replace it by _id.
//
// Reading first is not atomic with the write: two writers of one stream
// at once (only possible while a partition moves between nodes) could
// leave the older head or snapshot. A stale head is harmless to Load,
// Info and Handled, which look past it; List shows the stream's earlier
// Meta until its next commit. A stale snapshot only makes loads longer.
// FerretDB never made the conditional filter atomic either. The writer
// skips the read of a head where it cannot tell it anything (writeHeads):
// a stream's first head, and a head whose previous version it wrote.

// deleteByIDs deletes the documents with the given _ids, one {_id} delete
// each, in bulks (retried; deleting is idempotent).
func (s *Store) deleteByIDs(ctx context.Context, coll *mongo.Collection, op string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.bulkWrite(ctx, coll, op, deleteByIDOps(ids), false, false)
}

// deleteByIDOps is one {_id} delete per ID.
func deleteByIDOps(ids []string) []mongo.WriteModel {
	ops := make([]mongo.WriteModel, 0, len(ids))
	for _, id := range ids {
		ops = append(ops, mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}))
	}
	return ops
}

// versionedDoc is the part of a head or snapshot document that says which
// version it holds.
type versionedDoc struct {
	Version int64 `bson:"v"`
}

// storedVersions reads the version of each document named in ids (in
// parallel, by _id); a missing document is absent from the map.
func (s *Store) storedVersions(ctx context.Context, coll *mongo.Collection, op string, ids []string) (map[string]int64, error) {
	out := make(map[string]int64, len(ids))
	var mu sync.Mutex
	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(readConcurrency)
	for _, id := range ids {
		eg.Go(func() error {
			var d versionedDoc
			found, err := s.findByID(ctx, coll, op, id, &d, projectVersion)
			if err != nil || !found {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			out[id] = d.Version
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// projectVersion reads only a document's version.
var projectVersion = options.FindOne().SetProjection(bson.D{{Key: "v", Value: 1}})

// outboxIDs remembers the _ids of outbox entries by message ID, for the
// entries this store wrote or listed, so that MarkDispatched deletes them
// by _id. It is bounded: when full it is emptied, and MarkDispatched
// deletes the IDs it does not know by message ID (a scan on FerretDB).
type outboxIDs struct {
	mu sync.Mutex
	m  map[string][]string
}

// outboxIDsSize bounds outboxIDs.
const outboxIDsSize = 100_000

// remember notes that the entry with _id docID carries message msgID.
func (o *outboxIDs) remember(msgID, docID string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil || len(o.m) >= outboxIDsSize {
		o.m = make(map[string][]string)
	}
	for _, id := range o.m[msgID] {
		if id == docID {
			return
		}
	}
	o.m[msgID] = append(o.m[msgID], docID)
}

// take returns and forgets the entry _ids of the message IDs it knows, and
// the message IDs it does not know.
func (o *outboxIDs) take(msgIDs []string) (docIDs, unknown []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range msgIDs {
		known, ok := o.m[id]
		if !ok {
			unknown = append(unknown, id)
			continue
		}
		docIDs = append(docIDs, known...)
		delete(o.m, id)
	}
	return docIDs, unknown
}
