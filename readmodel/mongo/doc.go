// Package mongo is the read-model store on MongoDB (and the FerretDB dev
// server, which has no transactions and pushes only _id equality down).
//
// I1 without transactions: an Update that changes documents first inserts
// one intent document (rm_events, _id "model|first position"), which holds
// the event's stream and sequence and every change it makes; that insert
// is the atomic write. The derived documents are written from it right
// after: the documents (rm_docs, _id "model|key"), the change log (rm_log,
// _id "model|position"), the checkpoint (rm_checkpoints, _id
// "model|stream") and the model's head position (rm_heads, _id model).
// Before a process first updates a model it repairs it: it reads the head
// and re-applies every intent after it (_id lookups), so a crash between
// the insert and the derived writes delays them, never loses them. An
// event that changes no document writes only its checkpoint (one write).
//
// I3: the checkpoint is read under the model's lock and an event at or
// below it is not applied. Updates of one model are serialized within the
// process; a second process writing the same model is detected by the
// intent's unique _id (the loser repairs and decides again), within the
// change-log window. Run one projection in one process at a time.
package mongo
