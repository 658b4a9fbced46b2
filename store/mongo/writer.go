package mongo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/sync/errgroup"

	"github.com/sagaflow/sagaflow/store"
)

// This file is the write path: group commit. Append encodes its commit
// and queues it; one goroutine (runWriter) takes up to maxBatch queued
// appends and, for the whole batch:
//
//  1. checks each commit: its predecessor exists (gaps), and none of its
//     handled message IDs is recorded for its stream (I3); a stream's
//     first commit needs neither;
//  2. inserts a journal entry naming the batch's commits;
//  3. inserts the commits with one unordered insertMany: each is one
//     single-document insert, and a duplicate _id is ErrConcurrency (I1,
//     I2);
//  4. writes the derived documents of the commits that won (handled
//     markers, outbox entries, timers, heads) and answers the callers;
//  5. deletes the journal entry, with those of other batches in one bulk
//     (journalDeletes).
//
// A batch holds at most one version per stream (later versions wait for
// the next batch), so a commit's predecessor is never in its own batch.

// appendRequest is one queued Append. done has room for the answer, so the
// writer never blocks on a caller that stopped waiting.
type appendRequest struct {
	ctx    context.Context
	commit *encodedCommit
	done   chan error
}

// errDuplicate marks a commit whose insert hit an existing _id.
var errDuplicate = errors.New("duplicate commit _id")

// Append writes c as one document (I1) in the writer's next group commit.
// It fails with store.ErrConcurrency when the stream has a commit at
// c.Version, with store.ErrInvalidCommit when c is malformed or its
// predecessor is missing, with store.ErrAlreadyHandled when c names a
// message the stream already handled, and with store.ErrUnavailable when
// the server cannot be reached within the retry budget; then nothing of c
// is written, except that after ErrUnavailable (and after ctx ended while
// the commit was being written) the commit may have been written: reload
// the stream.
func (s *Store) Append(ctx context.Context, c store.Commit) error {
	if err := s.append(ctx, c); err != nil {
		return fmt.Errorf("append %s v%d: %w", c.Stream, c.Version, err)
	}
	return nil
}

func (s *Store) append(ctx context.Context, c store.Commit) error {
	if err := store.CheckAppend(ctx, s.closed.Load(), c); err != nil {
		return err
	}
	enc, err := encodeCommit(c, newToken())
	if err != nil {
		return err
	}
	r := &appendRequest{ctx: ctx, commit: enc, done: make(chan error, 1)}
	if err := s.enqueue(ctx, r); err != nil {
		return err
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("stopped waiting, the commit may still be written: %w", ctx.Err())
	}
}

// enqueue hands r to the writer, waiting while the queue is full.
func (s *Store) enqueue(ctx context.Context, r *appendRequest) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return store.ErrClosed
	}
	select {
	case s.reqs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runWriter is the writer goroutine. It ends when Close has closed the
// queue and every queued request has been answered.
func (s *Store) runWriter() {
	defer close(s.writerDone)
	done := newDoneCache()
	var finished journalDeletes
	defer finished.flush(s)
	var carry []*appendRequest
	open := true
	for open || len(carry) > 0 {
		batch := carry
		carry = nil
		if len(batch) == 0 {
			var r *appendRequest
			var ok bool
			select {
			case r, ok = <-s.reqs:
			default:
				finished.flush(s) // idle: nothing waits behind the deletes
				r, ok = <-s.reqs
			}
			if !ok {
				return
			}
			batch = append(batch, r)
		}
	fill:
		for open && len(batch) < s.cfg.maxBatch {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					open = false
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		batch, carry = splitBatch(batch)
		if id := s.commitBatch(batch, done); id != "" {
			finished.add(s, id)
		}
	}
}

// journalDeletes holds the _ids of the journal entries whose group commits
// are finished, for the writer to delete in bulks: when it has
// maxOpsPerBulk of them, when the queue is empty, and when it ends. Under
// load that is one delete command for many group commits instead of one
// round trip each before the next batch. An entry whose delete waits (or
// is lost with the process) costs nothing but a repair that rewrites its
// derived documents, which are idempotent, once it is older than the
// journal grace (30 s; the writer deletes within a batch's time).
type journalDeletes []string

func (j *journalDeletes) add(s *Store, id string) {
	*j = append(*j, id)
	if len(*j) >= maxOpsPerBulk {
		j.flush(s)
	}
}

func (j *journalDeletes) flush(s *Store) {
	if len(*j) == 0 {
		return
	}
	if err := s.deleteByIDs(s.writeLife, s.journal, "delete journal entries", *j); err != nil {
		s.log.Warn("journal entries not deleted; a later repair rewrites their derived documents",
			"entries", len(*j), "err", err)
	}
	*j = (*j)[:0]
}

// splitBatch keeps the requests of batch that can be written together (at
// most one version per stream) and returns the rest for the next batch,
// in order.
func splitBatch(batch []*appendRequest) (now, later []*appendRequest) {
	version := make(map[string]uint64, len(batch))
	for _, r := range batch {
		d := r.commit.derived
		if v, ok := version[d.stream]; ok && v != d.version {
			later = append(later, r)
			continue
		}
		version[d.stream] = d.version
		now = append(now, r)
	}
	return now, later
}

// doneCache remembers, per stream, the last version whose derived
// documents this writer finished. A commit whose predecessor it
// remembers needs no predecessor read and no marker repair. Only the
// writer goroutine touches it.
type doneCache map[string]uint64

func newDoneCache() doneCache { return doneCache{} }

// finishedBefore reports whether this writer finished the version of
// stream before v (its predecessor and head are then known); never for a
// first version, which has none.
func (d doneCache) finishedBefore(stream string, v uint64) bool {
	return v > 1 && d[stream] == v-1
}

func (d doneCache) set(stream string, v uint64) {
	if len(d) >= doneCacheSize {
		clear(d)
	}
	d[stream] = v
}

// streamGroup is the requests of a batch for one stream (one version).
type streamGroup struct {
	stream  string
	version uint64
	reqs    []int // indexes into the batch
	// repair lists the predecessor's handled markers, to be written
	// before the commit when the writer did not finish the predecessor
	// itself (see doc.go, I3).
	repair []any
}

// commitBatch writes batch and answers every request. It returns the _id
// of the batch's journal entry once every derived document is written (the
// entry is then done with), and "" when there is none or it must stay for
// the repair.
func (s *Store) commitBatch(batch []*appendRequest, done doneCache) (finishedJournal string) {
	ctx := s.writeLife
	results := make([]error, len(batch))
	live := make([]bool, len(batch))
	groups := map[string]*streamGroup{}
	var order []*streamGroup
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i] = fmt.Errorf("not written: %w", err)
			continue
		}
		live[i] = true
		d := r.commit.derived
		g := groups[d.stream]
		if g == nil {
			g = &streamGroup{stream: d.stream, version: d.version}
			groups[d.stream] = g
			order = append(order, g)
		}
		g.reqs = append(g.reqs, i)
	}
	answer := func() {
		for i, r := range batch {
			r.done <- results[i]
		}
	}
	if len(order) == 0 {
		answer()
		return
	}

	// 1. Checks: predecessors and handled markers, in parallel.
	var mu sync.Mutex
	refuse := func(i int, err error) {
		mu.Lock()
		defer mu.Unlock()
		if results[i] == nil {
			results[i] = err
		}
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(readConcurrency * 2)
	for _, g := range order {
		if g.version > 1 && !done.finishedBefore(g.stream, g.version) {
			eg.Go(func() error { return s.checkPredecessor(ectx, batch, g, refuse) })
		}
		if g.version == 1 {
			// A stream's first commit has no earlier commit that could have
			// handled its messages; a racing first commit that did is a
			// duplicate _id at the insert, so ErrConcurrency either way.
			continue
		}
		for _, i := range g.reqs {
			c := batch[i].commit
			for _, h := range c.doc.Handled {
				eg.Go(func() error {
					var m handledDoc
					found, err := s.findByID(ectx, s.handled, "look up handled message", handledID(g.stream, h), &m)
					if err != nil || !found {
						return err
					}
					if uint64(m.Version) >= g.version {
						refuse(i, fmt.Errorf("%w: a commit exists at v%d (it handled %q)", store.ErrConcurrency, m.Version, h))
					} else {
						refuse(i, fmt.Errorf("%w: message %q was handled by v%d", store.ErrAlreadyHandled, h, m.Version))
					}
					return nil
				})
			}
		}
	}
	if err := eg.Wait(); err != nil {
		for i := range batch {
			if live[i] && results[i] == nil {
				results[i] = fmt.Errorf("check before writing, nothing written: %w", err)
			}
		}
		answer()
		return
	}

	// 2. Journal entry and predecessor marker repairs, in parallel.
	var docs []any
	var idx []int
	var repairs []any
	for _, g := range order {
		repairs = append(repairs, g.repair...)
		for _, i := range g.reqs {
			if results[i] == nil {
				docs = append(docs, batch[i].commit.doc)
				idx = append(idx, i)
			}
		}
	}
	if len(docs) == 0 {
		answer()
		return
	}
	journal := journalDoc{ID: newToken(), At: time.Now().UnixNano()}
	for _, d := range docs {
		journal.IDs = append(journal.IDs, d.(commitDoc).ID)
	}
	eg, ectx = errgroup.WithContext(ctx)
	eg.Go(func() error {
		return s.retry(ectx, "insert journal entry", func(ctx context.Context) error {
			_, err := s.journal.InsertOne(ctx, journal)
			if mongo.IsDuplicateKeyError(err) {
				return nil // an earlier attempt got through
			}
			return err
		})
	})
	if len(repairs) > 0 {
		eg.Go(func() error { return s.insertIgnoringDuplicates(ectx, s.handled, "repair handled markers", repairs) })
	}
	if err := eg.Wait(); err != nil {
		for _, i := range idx {
			results[i] = fmt.Errorf("prepare, nothing written: %w", err)
		}
		answer()
		return
	}

	// 3. The commits: one single-document insert each.
	inserted, err := s.insertCommits(ctx, docs)
	if err != nil {
		for _, i := range idx {
			results[i] = fmt.Errorf("insert commit, it may have been written: %w", err)
		}
		answer()
		return // the journal entry stays for the repair
	}
	var won []derived
	for k, i := range idx {
		switch err := inserted[k]; {
		case errors.Is(err, errDuplicate):
			results[i] = fmt.Errorf("%w: a commit exists at v%d", store.ErrConcurrency, batch[i].commit.derived.version)
		case err != nil:
			results[i] = fmt.Errorf("insert commit, nothing written: %w", err)
		default:
			d := batch[i].commit.derived
			d.headIsOurs = done.finishedBefore(d.stream, d.version)
			won = append(won, d)
		}
	}

	// 4. Derived documents; the commits are durable whatever happens now.
	if err := s.writeDerived(ctx, won); err != nil {
		s.log.Error("derived documents not written; the journal entry stays for the repair",
			"journal", journal.ID, "commits", len(won), "err", err)
		answer()
		return
	}
	for _, d := range won {
		done.set(d.stream, d.version)
	}
	answer()
	// 5. The journal entry is done with: the writer deletes it (journalDeletes).
	return journal.ID
}

// checkPredecessor reads the commit before g's version. A missing one is a
// gap (ErrInvalidCommit). Unless the writer finished that commit itself,
// its handled IDs are checked directly and its markers queued for repair,
// because its writer may have died before writing them.
func (s *Store) checkPredecessor(ctx context.Context, batch []*appendRequest, g *streamGroup, refuse func(int, error)) error {
	var pred commitDoc
	found, err := s.findByID(ctx, s.commits, "read predecessor commit", commitID(g.stream, g.version-1), &pred,
		options.FindOne().SetProjection(bson.D{{Key: "handled", Value: 1}, {Key: "v", Value: 1}}))
	if err != nil {
		return err
	}
	if !found {
		for _, i := range g.reqs {
			refuse(i, fmt.Errorf("%w: the stream has no v%d, so v%d would leave a gap", store.ErrInvalidCommit, g.version-1, g.version))
		}
		return nil
	}
	seen := make(map[string]bool, len(pred.Handled))
	for _, h := range pred.Handled {
		seen[h] = true
		g.repair = append(g.repair, handledDoc{ID: handledID(g.stream, h), Version: int64(g.version - 1)})
	}
	for _, i := range g.reqs {
		for _, h := range batch[i].commit.doc.Handled {
			if seen[h] {
				refuse(i, fmt.Errorf("%w: message %q was handled by v%d", store.ErrAlreadyHandled, h, g.version-1))
			}
		}
	}
	return nil
}

// insertCommits inserts docs with one unordered insertMany (retried) and
// returns each document's outcome: nil, errDuplicate, or its write error.
// A duplicate after a retried attempt is checked by _id: the document an
// earlier attempt inserted carries the same token and counts as written.
func (s *Store) insertCommits(ctx context.Context, docs []any) ([]error, error) {
	out := make([]error, len(docs))
	attempts := 0
	err := s.retry(ctx, "insert commits", func(ctx context.Context) error {
		attempts++
		clear(out)
		_, err := s.commits.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		var bwe mongo.BulkWriteException
		if err == nil || !errors.As(err, &bwe) || len(bwe.WriteErrors) == 0 || retryable(err) {
			return err
		}
		for _, we := range bwe.WriteErrors {
			if we.Index < 0 || we.Index >= len(out) {
				return fmt.Errorf("write error for document %d of %d: %w", we.Index, len(out), err)
			}
			if mongo.IsDuplicateKeyError(mongo.WriteException{WriteErrors: []mongo.WriteError{we.WriteError}}) {
				out[we.Index] = errDuplicate
			} else {
				out[we.Index] = fmt.Errorf("code %d: %s", we.Code, we.Message)
			}
		}
		if bwe.WriteConcernError != nil {
			return fmt.Errorf("write concern: %s", bwe.WriteConcernError.Message)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if attempts == 1 {
		return out, nil
	}
	for k, e := range out {
		if !errors.Is(e, errDuplicate) {
			continue
		}
		want := docs[k].(commitDoc)
		var got commitDoc
		found, err := s.findByID(ctx, s.commits, "check a duplicate commit", want.ID, &got,
			options.FindOne().SetProjection(bson.D{{Key: "w", Value: 1}}))
		if err != nil {
			return nil, err
		}
		if found && got.Token == want.Token {
			out[k] = nil // our own earlier attempt
		}
	}
	return out, nil
}

// writeDerived writes the derived documents of commits that are durable:
// handled markers, outbox entries, timers (cancellations before settings,
// in commit order) and heads, in parallel. Every write is idempotent, so
// the repair can run it again. Every filter is {_id} alone (idwrites.go).
func (s *Store) writeDerived(ctx context.Context, ds []derived) error {
	if len(ds) == 0 {
		return nil
	}
	var markers, outbox []any
	var timerOps []mongo.WriteModel
	heads := newHeadWrites()
	for _, d := range ds {
		timerOps = append(timerOps, deleteByIDOps(d.cancel)...)
		if d.cancelOnly {
			continue
		}
		markers = append(markers, d.handled...)
		outbox = append(outbox, d.outbox...)
		for _, t := range d.timers {
			timerOps = append(timerOps, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: t.ID}}).SetReplacement(t).SetUpsert(true))
		}
		heads.add(d)
	}
	eg, ctx := errgroup.WithContext(ctx)
	if len(markers) > 0 {
		eg.Go(func() error { return s.insertIgnoringDuplicates(ctx, s.handled, "write handled markers", markers) })
	}
	if len(outbox) > 0 {
		eg.Go(func() error {
			if err := s.insertIgnoringDuplicates(ctx, s.outbox, "write outbox entries", outbox); err != nil {
				return err
			}
			for _, d := range outbox {
				o := d.(outboxDoc)
				s.outboxIDs.remember(o.MsgID, o.ID)
			}
			return nil
		})
	}
	if len(timerOps) > 0 {
		eg.Go(func() error {
			return s.bulkWrite(ctx, s.timers, "write timers", timerOps, true, false)
		})
	}
	eg.Go(func() error { return s.writeHeads(ctx, heads) })
	return eg.Wait()
}

// headWrites is what a group of commits changes in the stream heads: per
// stream, the newest version, and the Meta of the newest commit that
// carries one.
type headWrites struct {
	version map[string]uint64
	meta    map[string]*derived
}

func newHeadWrites() headWrites {
	return headWrites{version: map[string]uint64{}, meta: map[string]*derived{}}
}

func (h headWrites) add(d derived) {
	h.version[d.stream] = max(h.version[d.stream], d.version)
	if d.meta == nil {
		return
	}
	if old, ok := h.meta[d.stream]; ok && old.version >= d.version {
		return
	}
	h.meta[d.stream] = &d
}

// writeHeads moves the heads forward, never back. A stream with a new
// Meta gets its head replaced whole (its newest version and that Meta)
// unless the stored head is newer, read by _id first (see idwrites.go);
// the others only get their version raised ($max on v). A duplicate key
// is a racing upsert's: the head is there, and reads look past it.
//
// The head of a stream whose newest version here is its first is
// inserted instead, without the read: any head already stored names
// version 1 or later, so a duplicate _id leaves the newer (or the same)
// head in place. Every saga and every aggregate starts that way, so this
// saves one round trip per new stream.
//
// Nor is the head read when this writer wrote the head of the version
// before (derived.headIsOurs): a newer head could only be another
// writer's that inserted the next version and wrote its head in the one
// round trip between this commit's insert and this head write, the race
// the read itself leaves open (idwrites.go), and as harmless. A saga's
// every commit after its first is such a commit.
func (s *Store) writeHeads(ctx context.Context, h headWrites) error {
	if len(h.version) == 0 {
		return nil
	}
	var ops []mongo.WriteModel
	var first []any
	if len(h.meta) > 0 {
		var read, replace []string
		for id, d := range h.meta {
			switch {
			case h.version[id] == 1:
				first = append(first, d.head(1))
			case d.headIsOurs && d.version == h.version[id]:
				replace = append(replace, id)
			default:
				read = append(read, id)
			}
		}
		stored, err := s.storedVersions(ctx, s.heads, "read stream heads", read)
		if err != nil {
			return err
		}
		for _, id := range read {
			if old, ok := stored[id]; !ok || old <= int64(h.version[id]) {
				replace = append(replace, id) // else a newer head is stored
			}
		}
		for _, id := range replace {
			ops = append(ops, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}).SetReplacement(h.meta[id].head(h.version[id])).SetUpsert(true))
		}
	}
	for id, v := range h.version {
		if _, ok := h.meta[id]; ok {
			continue // replaced above
		}
		ops = append(ops, mongo.NewUpdateOneModel().
			SetFilter(bson.D{{Key: "_id", Value: id}}).
			SetUpdate(bson.D{{Key: "$max", Value: bson.D{{Key: "v", Value: int64(v)}}}}).
			SetUpsert(true))
	}
	eg, ctx := errgroup.WithContext(ctx)
	if len(first) > 0 {
		eg.Go(func() error { return s.insertIgnoringDuplicates(ctx, s.heads, "insert first stream heads", first) })
	}
	if len(ops) > 0 {
		eg.Go(func() error { return s.bulkWrite(ctx, s.heads, "write stream heads", ops, false, true) })
	}
	return eg.Wait()
}

// maxOpsPerBulk bounds the operations of one bulk write. FerretDB 1.24
// (the dev server) runs each update of a bulk write as a query whose rows
// stay open until the whole bulk is done, plus a transaction on another
// connection of its SQLite pool: a bulk of about a hundred updates takes
// every connection and waits for one more, for ever, and the server stops
// answering everyone. Small bulks keep that from happening; on MongoDB
// they cost a few more round trips per group commit.
const maxOpsPerBulk = 16

// bulkWrite writes ops to coll in bulks of at most maxOpsPerBulk, one
// after another (so ordered ops stay in order), each retried. With
// duplicatesDone an op that fails with a duplicate key counts as done
// (every op of such a bulk must be idempotent), and the other ops of its
// bulk are written again without it: MongoDB goes on past a failed op of
// an unordered bulk, but FerretDB 1.24 ignores "ordered": false on
// updates, stops at the first error and reports it at index 0, leaving
// the ops after it unwritten. Each round drops at least one op, so a bulk
// of n ops takes at most n rounds.
func (s *Store) bulkWrite(ctx context.Context, coll *mongo.Collection, op string, ops []mongo.WriteModel, ordered, duplicatesDone bool) error {
	for len(ops) > 0 {
		chunk := ops[:min(len(ops), maxOpsPerBulk)]
		ops = ops[len(chunk):]
		for len(chunk) > 0 {
			var rest []mongo.WriteModel
			err := s.retry(ctx, op, func(ctx context.Context) error {
				rest = nil
				_, err := coll.BulkWrite(ctx, chunk, options.BulkWrite().SetOrdered(ordered))
				if err == nil || !duplicatesDone {
					return err
				}
				failed, ok := duplicateIndexes(err, len(chunk))
				if !ok {
					return err
				}
				for i, m := range chunk {
					if !failed[i] {
						rest = append(rest, m)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			chunk = rest
		}
	}
	return nil
}

// duplicateIndexes returns the indexes of the ops of a bulk of n that err
// reports as failed, when err is a bulk write error of duplicate keys
// only; ok is false for any other error.
func duplicateIndexes(err error, n int) (failed map[int]bool, ok bool) {
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || retryable(err) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return nil, false
	}
	failed = make(map[int]bool, len(bwe.WriteErrors))
	for _, we := range bwe.WriteErrors {
		if we.Index < 0 || we.Index >= n || !mongo.IsDuplicateKeyError(mongo.WriteException{WriteErrors: []mongo.WriteError{we.WriteError}}) {
			return nil, false
		}
		failed[we.Index] = true
	}
	return failed, true
}

// insertIgnoringDuplicates inserts docs (unordered, retried); documents
// whose _id exists already are left as they are.
func (s *Store) insertIgnoringDuplicates(ctx context.Context, coll *mongo.Collection, op string, docs []any) error {
	return s.retry(ctx, op, func(ctx context.Context) error {
		_, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		var bwe mongo.BulkWriteException
		if err == nil || !errors.As(err, &bwe) || retryable(err) || bwe.WriteConcernError != nil {
			return err
		}
		for _, we := range bwe.WriteErrors {
			if !mongo.IsDuplicateKeyError(mongo.WriteException{WriteErrors: []mongo.WriteError{we.WriteError}}) {
				return err
			}
		}
		return nil
	})
}

// findByID reads the document with _id id into out (retried); found is
// false when there is none.
func (s *Store) findByID(ctx context.Context, coll *mongo.Collection, op, id string, out any, opts ...options.Lister[options.FindOneOptions]) (found bool, err error) {
	err = s.retry(ctx, op, func(ctx context.Context) error {
		err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}, opts...).Decode(out)
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
			found = false
			return nil
		case err != nil:
			return err
		}
		found = true
		return nil
	})
	return found, err
}
