package embedded

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/sagaflow/sagaflow/store"
)

// bucketSubjectKeys: subject -> SubjectKey JSON. It is made on the first
// CreateKey, in its own write transaction: keys are rare and are written
// apart from commits (never in a commit's value).
var bucketSubjectKeys = []byte("subject_keys")

// CreateKey stores k unless its subject has a key; it returns the
// subject's key. The write is its own transaction, durable on return.
func (s *Store) CreateKey(ctx context.Context, k store.SubjectKey) (store.SubjectKey, error) {
	if err := store.ValidateKey(k); err != nil {
		return store.SubjectKey{}, err
	}
	value, err := json.Marshal(k)
	if err != nil {
		return store.SubjectKey{}, fmt.Errorf("create key of %q: %w", k.Subject, err)
	}
	got := k
	err = s.updateKeys(ctx, func(b *bolt.Bucket) error {
		if old := b.Get([]byte(k.Subject)); old != nil {
			return json.Unmarshal(old, &got)
		}
		return b.Put([]byte(k.Subject), value)
	})
	if err != nil {
		return store.SubjectKey{}, fmt.Errorf("create key of %q: %w", k.Subject, err)
	}
	return got, nil
}

// LoadKey returns the subject's key (ok false when it has none).
func (s *Store) LoadKey(ctx context.Context, subject string) (store.SubjectKey, bool, error) {
	var k store.SubjectKey
	var ok bool
	err := s.viewTx(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSubjectKeys)
		if b == nil || subject == "" || len(subject) > bolt.MaxKeySize {
			return nil
		}
		v := b.Get([]byte(subject))
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &k)
	})
	if err != nil {
		return store.SubjectKey{}, false, fmt.Errorf("load key of %q: %w", subject, err)
	}
	return k, ok, nil
}

// DeleteKey deletes the subject's key in a transaction of its own. bbolt
// frees the page that held it; the bytes stay in the file's free space
// until bbolt reuses the page.
func (s *Store) DeleteKey(ctx context.Context, subject string) error {
	if err := store.ValidateSubject(subject); err != nil {
		return err
	}
	err := s.updateKeys(ctx, func(b *bolt.Bucket) error { return b.Delete([]byte(subject)) })
	if err != nil {
		return fmt.Errorf("delete key of %q: %w", subject, err)
	}
	return nil
}

// updateKeys runs fn on the keys bucket in a write transaction, unless ctx
// is done or the store is closed.
func (s *Store) updateKeys(ctx context.Context, fn func(b *bolt.Bucket) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return store.ErrClosed
	}
	return s.recovered("key transaction", func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bucketSubjectKeys)
			if err != nil {
				return fmt.Errorf("create bucket %s: %w", bucketSubjectKeys, err)
			}
			return fn(b)
		})
	})
}

// viewTx runs fn in a read-only transaction, unless ctx is done or the
// store is closed.
func (s *Store) viewTx(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return store.ErrClosed
	}
	return s.recovered("key read", func() error { return s.db.View(fn) })
}
