package mongo_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	driver "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sagaflow/sagaflow/internal/testenv"
)

// TestIDLookupsUseTheIDIndex: the server answers a lookup by _id from its
// _id index, not by reading the whole collection. Every hot read and
// write of the store is such a lookup (see idwrites.go), so a server that
// scans makes a store of n documents cost n document reads per commit.
// FerretDB 1.24's SQLite backend scans unless tools/devmongo/build.sh
// patches it, so this test fails on a dev server built without the
// patch. The test reads the plan from explain: FerretDB's SQLite backend
// gives SQLite's query plan ("SEARCH ... USING INDEX" or "SCAN"), MongoDB
// its winning plan (IDHACK or an index scan, never COLLSCAN).
func TestIDLookupsUseTheIDIndex(t *testing.T) {
	uri := testenv.MongoDB(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	client, err := driver.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Disconnect(context.WithoutCancel(ctx)) }()
	db := client.Database(freshDatabase(t, uri))
	docs := make([]any, 0, 100)
	for i := range 100 {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("doc-%03d", i)}, {Key: "n", Value: i}})
	}
	if _, err := db.Collection("c").InsertMany(ctx, docs); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var reply bson.M
	err = db.RunCommand(ctx, bson.D{
		{Key: "explain", Value: bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "_id", Value: "doc-042"}}}}},
		{Key: "verbosity", Value: "queryPlanner"},
	}).Decode(&reply)
	if err != nil {
		t.Fatalf("explain find by _id: %v", err)
	}
	planJSON, err := bson.MarshalExtJSON(reply["queryPlanner"], false, false)
	if err != nil {
		t.Fatalf("explain gave no query plan document: %v (%v)", err, reply)
	}
	plan := string(planJSON)
	t.Logf("plan of a find by _id: %s", plan)
	switch {
	case strings.Contains(plan, `"Plan"`): // FerretDB on SQLite
		if strings.Contains(plan, "SCAN") || !strings.Contains(plan, "USING INDEX") {
			t.Fatalf("the server scans the collection to find one _id (is it a devmongo built without tools/devmongo/build.sh?): %s", plan)
		}
	case strings.Contains(plan, "COLLSCAN"):
		t.Fatalf("the server scans the collection to find one _id: %s", plan)
	case !strings.Contains(plan, "IDHACK") && !strings.Contains(plan, "IXSCAN") && !strings.Contains(plan, "EXPRESS"):
		t.Fatalf("no index lookup in the plan of a find by _id: %s", plan)
	}
}
