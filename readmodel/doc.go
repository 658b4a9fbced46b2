// Package readmodel defines where projections keep their read models: JSON
// documents keyed by (model, key), the per-(model, stream) checkpoint that
// says which event of each stream a model reflects, and a bounded,
// per-model change log that clients follow (server-sent events).
//
// The root package holds the Store contract and shared types;
// implementations live in readmodel/embedded (bbolt) and readmodel/mongo
// (MongoDB, the FerretDB dev server), and both run the one conformance
// suite in readmodel/readmodeltest. Notifying wraps any Store and tells
// subscribers when a model changed.
//
// Invariants (see DESIGN.md):
//
//   - I1: Update writes an event's document changes, its change-log
//     entries and the stream's new checkpoint together, or nothing (bbolt:
//     one transaction; MongoDB: one insert of an intent document, from
//     which the derived documents are written and, after a crash,
//     repaired).
//   - I3: an event at or below its stream's checkpoint is not applied
//     again (Update reports it as a duplicate), and an event past the next
//     one is refused with ErrOutOfOrder, so a model never skips or reorders
//     a stream's events.
package readmodel
