// Package shred owns crypto-shredding: payload fields tagged
// `sagaflow:"personal"` are encrypted (AES-GCM, from the standard library)
// under a key per data subject before they are stored, and decrypted when
// they are read. Forgetting a subject deletes its key: from then on its
// personal fields read as redacted ("[redacted]" for strings, the zero
// value otherwise), while the rest of every event, and the streams that
// hold them, load as before.
//
// The subject of an event is the value of its field tagged
// `sagaflow:"subject"` (a string), or, when it has none or the field is
// empty, the aggregate ID. Keys live in the store's Keys part
// (store.Keys), never in a commit document. A sealed field is a JSON
// string that names its subject and key ID, so Open needs no type
// information and runs before upcasting.
//
// It supports invariant I1 by working on the payloads of a commit before
// the commit's single write: the commit holds ciphertext only, and the key
// exists durably before any ciphertext under it is written.
package shred
