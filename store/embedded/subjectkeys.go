package embedded

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sagaflow/sagaflow/store"
)

// Subject keys live in their own bucket, written apart from commits (never
// in a commit's value). Their writes ride on the writer's group commits
// like every other write, so that they are checked against the latest
// state and durable before the caller hears back.

// subjectKeyWrite is a CreateKey or DeleteKey request: the subject, the
// key to store (CreateKey) and, once applied, the subject's stored key.
type subjectKeyWrite struct {
	subject string
	value   []byte // SubjectKey JSON (CreateKey)
	stored  []byte // the key the subject had before (CreateKey)
}

// CreateKey stores k unless its subject has a key; it returns the
// subject's key. It is durable on return.
func (s *Store) CreateKey(ctx context.Context, k store.SubjectKey) (store.SubjectKey, error) {
	if err := store.ValidateKey(k); err != nil {
		return store.SubjectKey{}, err
	}
	value, err := json.Marshal(k)
	if err != nil {
		return store.SubjectKey{}, fmt.Errorf("create key of %q: %w", k.Subject, err)
	}
	w := &subjectKeyWrite{subject: k.Subject, value: value}
	if err := s.writeKey(ctx, opCreateKey, w); err != nil {
		return store.SubjectKey{}, fmt.Errorf("create key of %q: %w", k.Subject, err)
	}
	if w.stored == nil {
		return k, nil
	}
	var got store.SubjectKey
	if err := json.Unmarshal(w.stored, &got); err != nil {
		return store.SubjectKey{}, fmt.Errorf("create key of %q: decode the stored key: %w", k.Subject, err)
	}
	return got, nil
}

// createKey puts w's key unless its subject has one, which it leaves in
// w.stored.
func createKey(b txBuckets, w *subjectKeyWrite) error {
	old, err := b.subjectKeys.Get([]byte(w.subject))
	if err != nil {
		return fmt.Errorf("read key: %w", err)
	}
	if old != nil {
		w.stored = old
		return nil
	}
	return b.subjectKeys.Put([]byte(w.subject), w.value)
}

// LoadKey returns the subject's key (ok false when it has none).
func (s *Store) LoadKey(ctx context.Context, subject string) (store.SubjectKey, bool, error) {
	var k store.SubjectKey
	var ok bool
	err := s.view(ctx, func(b txBuckets) error {
		if subject == "" || len(subject) > maxKeySize {
			return nil
		}
		v, err := b.subjectKeys.Get([]byte(subject))
		if err != nil || v == nil {
			return err
		}
		ok = true
		return json.Unmarshal(v, &k)
	})
	if err != nil {
		return store.SubjectKey{}, false, fmt.Errorf("load key of %q: %w", subject, err)
	}
	return k, ok, nil
}

// DeleteKey deletes the subject's key, durably on return. Pebble writes a
// deletion marker; the key's bytes stay in the write-ahead log and table
// files until the log is recycled and compactions rewrite the tables.
func (s *Store) DeleteKey(ctx context.Context, subject string) error {
	if err := store.ValidateSubject(subject); err != nil {
		return err
	}
	if err := s.writeKey(ctx, opDeleteKey, &subjectKeyWrite{subject: subject}); err != nil {
		return fmt.Errorf("delete key of %q: %w", subject, err)
	}
	return nil
}

// writeKey hands a subject-key write to the writer and waits for it.
func (s *Store) writeKey(ctx context.Context, op opKind, w *subjectKeyWrite) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(w.subject) > maxKeySize {
		return fmt.Errorf("%w: subject is %d bytes, limit %d", store.ErrInvalidCommit, len(w.subject), maxKeySize)
	}
	r := &request{ctx: ctx, op: op, key: w, done: make(chan error, 1)}
	return s.submit(ctx, r)
}
