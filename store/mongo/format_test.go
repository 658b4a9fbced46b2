package mongo_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	driver "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/mongo"
)

// formatOf returns the v field of the database's format marker ("" when
// it has none).
func formatOf(t *testing.T, uri, db string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	client, err := driver.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	var doc struct {
		V string `bson:"v"`
	}
	err = client.Database(db).Collection("meta").FindOne(ctx, bson.D{{Key: "_id", Value: "format"}}).Decode(&doc)
	if errors.Is(err, driver.ErrNoDocuments) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return doc.V
}

// setFormat replaces the database's format marker with v ("" deletes it).
func setFormat(t *testing.T, uri, db, v string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	client, err := driver.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	meta := client.Database(db).Collection("meta")
	if _, err := meta.DeleteOne(ctx, bson.D{{Key: "_id", Value: "format"}}); err != nil {
		t.Fatal(err)
	}
	if v != "" {
		if _, err := meta.InsertOne(ctx, bson.D{{Key: "_id", Value: "format"}, {Key: "v", Value: v}}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenWritesAndChecksTheFormatMarker(t *testing.T) {
	uri := testenv.MongoDB(t)
	db := freshDatabase(t, uri)
	s := open(t, uri, db)
	c := store.Commit{Stream: "s", Version: 1, At: time.Now()}
	if err := s.Append(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := formatOf(t, uri, db); got != mongo.FormatVersion {
		t.Fatalf("format marker after the first Open = %q, want %q", got, mongo.FormatVersion)
	}

	// A database of before the marker is format 1: it opens and gets one.
	setFormat(t, uri, db, "")
	s = open(t, uri, db)
	if cs, err := s.Load(t.Context(), "s", 1); err != nil || len(cs) != 1 {
		t.Fatalf("Load after reopening = %d commits, %v", len(cs), err)
	}
	_ = s.Close()
	if got := formatOf(t, uri, db); got != mongo.FormatVersion {
		t.Fatalf("format marker after opening an unmarked database = %q, want %q", got, mongo.FormatVersion)
	}

	// A later (or unknown) format is refused, naming both versions, and
	// left as it is.
	setFormat(t, uri, db, "99")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s2, err := mongo.Open(ctx, uri, mongo.WithDatabase(db))
	if err == nil {
		_ = s2.Close()
		t.Fatal("Open accepted a database of format 99")
	}
	if !errors.Is(err, store.ErrUnsupportedFormat) || !strings.Contains(err.Error(), `"99"`) || !strings.Contains(err.Error(), `"`+mongo.FormatVersion+`"`) {
		t.Errorf("Open of a format-99 database: %v; want store.ErrUnsupportedFormat naming both versions", err)
	}
	if got := formatOf(t, uri, db); got != "99" {
		t.Errorf("the refused database's marker is now %q", got)
	}
}
