package mongo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/readmodel"
)

// TestRepairAfterCrash writes an intent and nothing derived from it, as a
// process that crashed right after the insert would, and shows that the
// next process finishes it before it applies anything else: the document,
// the change and the checkpoint appear, and the event is not applied
// twice.
func TestRepairAfterCrash(t *testing.T) {
	uri := testenv.MongoDB(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	db := "sagaflow_rmrepair_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, uri, WithDatabase(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.client.Database(db).Drop(context.Background()); _ = s.Close() })
	at := time.Now().UTC().Truncate(time.Millisecond)
	in := intentRecord{ID: posID("m", 1), Model: "m", Stream: "s", Seq: 1, Changes: []changeRecord{
		changeRec(readmodel.Change{Position: 1, Model: "m", Key: "k", Body: []byte(`{"n":1}`), Version: 1, Stream: "s", Seq: 1, At: at}),
	}}
	if _, err := s.events.InsertOne(ctx, in); err != nil {
		t.Fatal(err)
	}
	if cp, _ := s.Checkpoint(ctx, "m", "s"); cp != 0 {
		t.Fatalf("checkpoint before repair %d, want 0 (nothing derived yet)", cp)
	}
	// A second process (a fresh Store) applies the same event: it repairs
	// first, so it sees event 1 as applied.
	s2, err := Open(ctx, uri, WithDatabase(db))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	r, err := s2.Update(ctx, "m", "s", 1, func(_ context.Context, tx readmodel.Tx) error { return tx.Put("k", []byte(`{"n":100}`)) })
	if err != nil || r.Applied {
		t.Fatalf("event 1 after the crash: %+v %v, want not applied (the intent stands for it)", r, err)
	}
	d, err := s2.Get(ctx, "m", "k")
	if err != nil || string(d.Body) != `{"n":1}` || d.Position != 1 {
		t.Fatalf("repaired doc: %+v %v", d, err)
	}
	ch, _, err := s2.Changes(ctx, "m", 0, 0)
	if err != nil || len(ch) != 1 {
		t.Fatalf("repaired change log: %v %v", ch, err)
	}
	r, err = s2.Update(ctx, "m", "s", 2, func(_ context.Context, tx readmodel.Tx) error { return tx.Put("k", []byte(`{"n":2}`)) })
	if err != nil || !r.Applied || r.Changes[0].Position != 2 {
		t.Fatalf("event 2: %+v %v, want applied at position 2", r, err)
	}
}
