package mongo

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/sagaflow/sagaflow/store"
)

// FormatVersion is the stored format this release writes and reads: the
// field "v" of the document {_id: "format"} in the collection "meta",
// written on the first Open of a database. Open refuses a database of any
// other format with store.ErrUnsupportedFormat. A database without the
// document (made before the marker existed) has format "1", the layout the
// marker was introduced with, and gets the document.
const FormatVersion = "1"

// collMeta holds database-level facts such as the format version.
const collMeta = "meta"

// formatDocID is the _id of the format document.
const formatDocID = "format"

// formatDoc marks the database's stored format.
type formatDoc struct {
	ID      string `bson:"_id"`
	Version string `bson:"v"`
}

// checkFormat reads the database's format marker, writes it when missing,
// and fails with store.ErrUnsupportedFormat when it names another format.
func (s *Store) checkFormat(ctx context.Context) error {
	meta := s.db.Collection(collMeta)
	for range 2 {
		var doc formatDoc
		err := s.retry(ctx, "read format marker", func(ctx context.Context) error {
			return meta.FindOne(ctx, bson.D{{Key: "_id", Value: formatDocID}}).Decode(&doc)
		})
		switch {
		case err == nil:
			if doc.Version != FormatVersion {
				return fmt.Errorf("%w: the database is of stored format %q, this release reads format %q", store.ErrUnsupportedFormat, doc.Version, FormatVersion)
			}
			return nil
		case !errors.Is(err, mongo.ErrNoDocuments):
			return err
		}
		err = s.retry(ctx, "write format marker", func(ctx context.Context) error {
			_, err := meta.InsertOne(ctx, formatDoc{ID: formatDocID, Version: FormatVersion})
			return err
		})
		if err == nil {
			return nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return err
		}
		// Another process wrote it first (or a retried insert had
		// succeeded): read what it wrote.
	}
	return errors.New("format marker: written and gone again")
}
