package mongo

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/sagaflow/sagaflow/store"
)

// collSubjectKeys holds one document per data subject, _id the subject:
// its encryption key (crypto-shredding). Keys live apart from commits.
const collSubjectKeys = "subject_keys"

// keyDoc is one subject's key.
type keyDoc struct {
	Subject string `bson:"_id"`
	ID      string `bson:"kid"`
	Secret  []byte `bson:"secret"`
	At      int64  `bson:"at"`
}

func (s *Store) subjectKeys() *mongo.Collection { return s.db.Collection(collSubjectKeys) }

// CreateKey inserts k unless its subject has a key (the _id is the
// subject, so the primary key decides a race) and returns the subject's
// key.
func (s *Store) CreateKey(ctx context.Context, k store.SubjectKey) (store.SubjectKey, error) {
	if err := store.ValidateKey(k); err != nil {
		return store.SubjectKey{}, err
	}
	doc := keyDoc{Subject: k.Subject, ID: k.ID, Secret: k.Secret, At: nanos(k.CreatedAt)}
	var got store.SubjectKey
	err := s.read(ctx, "create key", func(ctx context.Context) error {
		err := s.retry(ctx, "insert key", func(ctx context.Context) error {
			_, err := s.subjectKeys().InsertOne(ctx, doc)
			if mongo.IsDuplicateKeyError(err) {
				return nil // an earlier try or another writer stored one
			}
			return err
		})
		if err != nil {
			return err
		}
		var stored keyDoc
		found, err := s.findByID(ctx, s.subjectKeys(), "read key", k.Subject, &stored)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("key of %q vanished after insert (deleted concurrently)", k.Subject)
		}
		got = stored.key()
		return nil
	})
	if err != nil {
		return store.SubjectKey{}, fmt.Errorf("create key of %q: %w", k.Subject, err)
	}
	return got, nil
}

// LoadKey returns the subject's key (ok false when it has none).
func (s *Store) LoadKey(ctx context.Context, subject string) (store.SubjectKey, bool, error) {
	var d keyDoc
	var found bool
	err := s.read(ctx, "load key", func(ctx context.Context) error {
		var err error
		found, err = s.findByID(ctx, s.subjectKeys(), "read key", subject, &d)
		return err
	})
	if err != nil {
		return store.SubjectKey{}, false, fmt.Errorf("load key of %q: %w", subject, err)
	}
	if !found {
		return store.SubjectKey{}, false, nil
	}
	return d.key(), true, nil
}

// DeleteKey deletes the subject's key (with the store's write concern).
func (s *Store) DeleteKey(ctx context.Context, subject string) error {
	if err := store.ValidateSubject(subject); err != nil {
		return err
	}
	err := s.read(ctx, "delete key", func(ctx context.Context) error {
		return s.retry(ctx, "delete key", func(ctx context.Context) error {
			_, err := s.subjectKeys().DeleteOne(ctx, bson.D{{Key: "_id", Value: subject}})
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("delete key of %q: %w", subject, err)
	}
	return nil
}

func (d keyDoc) key() store.SubjectKey {
	return store.SubjectKey{Subject: d.Subject, ID: d.ID, Secret: d.Secret, CreatedAt: time.Unix(0, d.At).UTC()}
}
