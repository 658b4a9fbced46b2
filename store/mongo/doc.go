// Package mongo is sagaflow's production store: store.Store on MongoDB
// (a standalone server or a replica set) and on MongoDB-wire servers such
// as FerretDB, the tests' dev server (tools/devmongo). It uses no
// multi-document transactions, which FerretDB does not have, and passes
// the conformance suite in store/storetest.
//
//	s, err := mongo.Open(ctx, "mongodb://db1,db2/orders?replicaSet=rs0",
//		mongo.WithRetry(10*time.Second), mongo.WithLogger(logger))
//
// # Documents
//
// Every state change is ONE single-document insert into commits (I1): the
// commit, kept as its JSON (byte for byte, times to the nanosecond), with
// its events, outbox messages, handled message IDs, timers, timer
// cancellations and Meta. Its _id is the natural key
// "<stream>|<version, 20 digits>", so the primary key is the (stream,
// version) uniqueness check: a second commit at a version fails with a
// duplicate key, which Append returns as store.ErrConcurrency (I2).
// ('%' and '|' in stream names are escaped in keys, so keys never clash.)
// No conditional update decides anything: on FerretDB racing conditional
// updates lose updates, racing inserts on one _id stay exact.
//
// Everything else is derived from the commits and written after them:
//
//	handled    _id "<stream>|<message ID>" -> commit version    (I3)
//	outbox     _id "<commit _id>|<index>", at, msg, entry      pending only (I4)
//	timers     _id timer ID, due, timer                        live only (I5)
//	heads      _id stream -> version, kind, type, status, Meta (Info, List)
//	snapshots  _id stream -> version, snapshot                 (see below)
//	journal    _id random -> the commit _ids of one group commit
//	subject_keys _id subject -> key ID, secret (crypto-shredding; not derived:
//	           written by CreateKey, deleted by DeleteKey, never in a commit)
//	meta       _id "format" -> v, the stored format (FormatVersion; written
//	           on the first Open, checked by every Open: another format
//	           fails with store.ErrUnsupportedFormat)
//
// Secondary indexes, created on Open (idempotent): outbox (at, _id) and
// (msg), timers (due, _id), heads (kind, type, status, _id), journal (at).
// The uniqueness the issue asks for (stream+version, handled message IDs)
// is the primary key of the natural _ids and needs no index of its own.
// MarkDispatched is given message IDs, not outbox _ids: it deletes the
// entries this store wrote or listed by _id (it remembers their _ids, a
// bounded map), and only the others by msg.
// FerretDB's SQLite backend answers only a filter of the form
// {_id: <string>} from an index and reads every document of the
// collection for anything else: {_id: {$in: [...]}}, {_id: x, v: {$lte:
// n}} and deletes included. So every hot read and write names one
// document by _id alone (idwrites.go; TestHotPathFiltersByIDAlone checks
// it): stream reads (Load, Info, Handled) look commits up by _id, in
// parallel up to the version the stream's head names and one by one past
// it; deletes are one {_id} delete per document; heads and snapshots,
// which must not move back to an older version, are read by _id and then
// replaced by _id, except a stream's first head, which is inserted (any
// head already there is as new or newer), and a head whose previous
// version this writer wrote, which is replaced without the read. What is queried by other fields (the outbox, timers
// and journal sweeps, List) lives in small collections whose documents
// are deleted when done, or is read rarely. (FerretDB 1.24 itself scans
// even for {_id} unless patched: tools/devmongo/build.sh builds the dev
// server with the fix, and TestIDLookupsUseTheIDIndex fails without it.)
//
// # Writes: group commit
//
// Append queues its commit for one writer goroutine, which takes up to
// WithMaxBatch queued commits (at most one version per stream) and for the
// batch: checks them (the predecessor exists, else store.ErrInvalidCommit;
// no handled ID is recorded, else store.ErrAlreadyHandled; a stream's
// first commit needs neither check, so it costs no read); inserts a
// journal entry naming the commits; inserts the commits with one unordered
// insertMany (each document its own atomic insert); writes the winners'
// derived documents (batched inserts, and bulk upserts for heads and
// timers); answers the callers; deletes the journal entry (in one bulk
// with those of the next batches, up to 16, or as soon as no request
// waits). Batched inserts
// are what FerretDB does fastest (DESIGN.md: about 20,000 documents/s
// against about 2,000 single inserts/s and about 70 conditional updates/s).
//
// # Crashes between a commit and its derived documents
//
// Nothing is lost. The journal entry is inserted before the commits and
// deleted after their derived documents, so an entry that stays behind
// names every commit whose derived documents may be missing. Open repairs
// entries older than 30 seconds (younger ones may belong to a live writer
// elsewhere), and so do PendingOutbox and DueTimers, at most every 10
// seconds: the repair writes the derived documents of each listed commit
// that exists again, re-applies the timer cancellations of the stream's
// later commits, and deletes the entry. Derived writes are idempotent, but
// an outbox entry or a timer dispatched or deleted between the crash and
// the repair comes back once: a duplicate publish, absorbed by I3. Until
// the repair, a crashed commit's outbox entries and timers are late (I5:
// late, never lost). Reads do not wait for it: Info and Load look past
// the head; Handled reads the stream's last commit when the marker is
// missing.
//
// # I3 exactly, without a transaction
//
// Handled markers are derived, so a marker can be missing for a commit
// whose writer died. Only the last commit of a stream can be in that
// state: before the writer inserts v, it makes sure the markers of v-1
// exist. When it wrote v-1 itself and finished it (it remembers the last
// finished version per stream), they do; otherwise it reads v-1 (which it
// must read anyway, for gaps), checks the new commit's handled IDs against
// v-1's list directly, and inserts v-1's markers again (idempotent) before
// inserting v. So when v is inserted, every commit below v-1 has its
// markers, and v-1 was checked directly: the check is exact. A racing
// writer that handles the same message is, by the per-key actor and the
// per-partition single active consumer, at the same version, and the
// _id uniqueness lets only one of them in. Handled answers from the
// marker, else from the stream's last commit.
//
// # Snapshots
//
// SaveSnapshot reads the stored snapshot's version by _id and replaces the
// snapshot by _id unless the stored one is newer. The read and the write
// are not one atomic step, so two racing saves may keep the older
// snapshot, which is still correct (a reader loads the commits after it).
// Heads are written the same way, so two writers of one stream at once
// (only while a partition moves between nodes) may leave a head behind its
// stream: Load, Info and Handled look past it, and List shows the
// stream's earlier Meta until its next commit. Snapshots are never part
// of a commit write.
//
// # Failures
//
// Every call honours its context. Network, timeout and server-selection
// errors are retried with exponential backoff (cenkalti/backoff) within
// the retry budget (WithRetry, default 10s) and the context; after the
// budget the error wraps store.ErrUnavailable and names the operation and
// the last cause. A duplicate key is never retried. A commit insert that
// is retried and then meets a duplicate _id reads that document back: if
// it carries the Append's own random token, an earlier attempt got through
// and the Append succeeds instead of reporting a false conflict. After
// Close every call fails with store.ErrClosed.
package mongo
