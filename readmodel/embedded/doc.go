// Package embedded is the read-model store in one bbolt file, the default
// beside the embedded event store. An Update is one bbolt read-write
// transaction holding the documents, the change-log entries and the
// checkpoint it writes (I1), so a crash leaves either all of them or none;
// the checkpoint check happens inside the same transaction (I3).
//
// Buckets: docs (model NUL key -> Doc JSON), checkpoints (model NUL stream
// -> big-endian uint64), log (model NUL big-endian position -> Change
// JSON), heads (model -> the last position handed out, kept across Drop).
package embedded
