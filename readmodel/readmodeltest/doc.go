// Package readmodeltest is the conformance suite every readmodel.Store
// runs (readmodel/embedded against bbolt, readmodel/mongo against the
// MongoDB dev server): documents, the checkpoint that makes Update
// idempotent and in order (I3), the atomicity of an Update (I1), the
// change log and its window, Drop, concurrency within one model, and
// durability across a reopen. Its own worth is shown by the broken stores
// in readmodel/embedded's mutants test.
package readmodeltest
