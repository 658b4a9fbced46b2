// Package embedded is sagaflow's durable single-node store: the default when
// no MongoDB URI is given. It keeps every stream, outbox entry, handled
// message ID and timer in one Pebble database (a directory, DefaultDirName,
// inside the directory passed to Open), and passes the conformance suite in
// store/storetest.
//
// # Why Pebble
//
// Pebble (github.com/cockroachdb/pebble/v2, CockroachDB's storage engine)
// is a log-structured merge tree in pure Go: a commit is one append to the
// write-ahead log and one fsync, however many keys it touches, and the
// table files are written later, in the background, in large sequential
// runs. Stored format 1 used bbolt, a copy-on-write B+tree: every write
// transaction rewrote the pages on the path to each key it touched, at
// scattered places in the file, and synced twice. On the project's 2-core
// machine an append of 4 KiB plus fdatasync takes about 0.3 ms, 512
// scattered page writes plus fdatasync 10-20 ms; a full-load bbolt
// transaction took 26-60 ms, a Pebble batch of the same load about 1 ms.
// bbolt also mapped its whole file into memory, so the pages a process
// read counted in its RSS. The bench harness (bench/) measures the store
// in every run.
//
// # The model
//
// Writes go through one goroutine owned by the Store. Append encodes its
// commit on the caller's goroutine and queues it on a bounded channel; the
// writer takes up to WithMaxBatch queued requests, applies them one after
// the other to one Pebble indexed batch (which reads its own writes),
// commits it with one WAL write and fsync, and answers each caller.
// MarkDispatched, DeleteTimers, SaveSnapshot, CreateKey and DeleteKey ride
// on the same batches and also return once durable. Every request is
// checked against the batch's state, which includes the requests before it
// in the same batch, before anything of it is written:
//
//   - a commit at a version the stream already has fails with
//     store.ErrConcurrency (I2), also when the other commit is in the same
//     batch;
//   - a commit that skips a version fails with store.ErrInvalidCommit;
//   - a commit naming a message the stream already handled fails with
//     store.ErrAlreadyHandled (I3).
//
// A refused request writes nothing and the rest of the batch commits (I1).
// If writing a request fails part way, the batch is dropped and built again
// without it; if the commit itself fails, every request in it gets that
// error and none of them is written.
//
// Pebble makes a batch visible before its fsync ends. Readers (Load,
// Handled, Info, List, PendingOutbox, DueTimers, NextTimer, LoadSnapshot,
// LoadKey) therefore read a snapshot the writer takes after each durable
// batch, so that nothing a crash could take back is ever read (the relay
// must not publish an outbox message whose commit is then lost). They run
// alongside the writer. All methods are safe for concurrent use. Close
// lets the writer finish what is queued, waits for reads, and closes the
// database; after it, every method fails with store.ErrClosed.
//
// # Layout
//
// One ordered key space, each bucket under a one-byte prefix (kv.go):
// commits (stream 0x00 version -> commit JSON), heads (stream -> version
// and latest Meta), handled (stream 0x00 message ID -> version), outbox
// (commit time ++ sequence -> entry, so pending entries come oldest first,
// plus an index from message ID), timers (due time ++ timer ID -> timer, so
// due timers come earliest first, plus an index from timer ID), snapshots,
// subject keys and info (the format and the outbox sequence). Keys are
// big-endian so that byte order is numeric order. Stream names may
// therefore not contain the byte 0x00.
//
// Timers (I5) and pending outbox entries (I4) live in the database, so
// they come back after a restart until DeleteTimers and MarkDispatched
// remove them.
//
// # Formats
//
// FormatVersion is "2". Open migrates a store of format 1 (the bbolt file
// LegacyFileName) by copying its keys, and refuses any other format with
// store.ErrUnsupportedFormat; see migrate.go.
package embedded
