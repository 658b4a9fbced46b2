package participant_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/participant"
	"github.com/sagaflow/sagaflow/store/embedded"
	"github.com/sagaflow/sagaflow/store/mongo"
)

func randomSuffix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// dedupers returns every ready Deduper, each on its real backing store.
func dedupers(t *testing.T) map[string]func(t *testing.T) participant.Deduper {
	return map[string]func(t *testing.T) participant.Deduper{
		"memory": func(*testing.T) participant.Deduper { return participant.NewMemoryDeduper() },
		"store-embedded": func(t *testing.T) participant.Deduper {
			st, err := embedded.Open(t.Context(), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return participant.NewStoreDeduper(st)
		},
		"store-mongo": func(t *testing.T) participant.Deduper {
			uri := testenv.MongoDB(t)
			db := "participant_dedupe_" + randomSuffix(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			st, err := mongo.Open(ctx, uri, mongo.WithDatabase(db))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = st.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_ = mongo.DropDatabase(ctx, uri, db)
			})
			return participant.NewStoreDeduper(st)
		},
	}
}

// TestDedupers: a handled message is seen with the reply recorded for it;
// a failed apply records nothing; a second Once of a recorded message is
// ErrDuplicate; of 8 racing Once calls of one message exactly one records.
func TestDedupers(t *testing.T) {
	for name, make := range dedupers(t) {
		t.Run(name, func(t *testing.T) {
			d := make(t)
			ctx := t.Context()
			if _, ok, err := d.Seen(ctx, "svc", "m1"); err != nil || ok {
				t.Fatalf("Seen before = %v %v, want not seen", ok, err)
			}
			boom := errors.New("boom")
			if _, err := d.Once(ctx, "svc", "m1", func(context.Context) (message.Envelope, error) { return message.Envelope{}, boom }); !errors.Is(err, boom) {
				t.Fatalf("failed apply: %v, want boom", err)
			}
			if _, ok, _ := d.Seen(ctx, "svc", "m1"); ok {
				t.Fatal("a failed apply was recorded")
			}
			reply := message.Envelope{ID: "r1", Kind: message.KindReply, Type: message.AcceptedType, Key: "k", Destination: "saga", CausationID: "m1", Payload: []byte(`{}`)}
			got, err := d.Once(ctx, "svc", "m1", func(context.Context) (message.Envelope, error) { return reply, nil })
			if err != nil || got.ID != "r1" {
				t.Fatalf("Once = %+v %v", got, err)
			}
			prev, ok, err := d.Seen(ctx, "svc", "m1")
			if err != nil || !ok || prev.ID != "r1" || prev.CausationID != "m1" || string(prev.Payload) != "{}" {
				t.Fatalf("Seen after = %+v %v %v, want the recorded reply", prev, ok, err)
			}
			if _, ok, _ := d.Seen(ctx, "other", "m1"); ok {
				t.Fatal("another consumer sees m1 as handled")
			}
			if _, err := d.Once(ctx, "svc", "m1", func(context.Context) (message.Envelope, error) { return reply, nil }); !errors.Is(err, participant.ErrDuplicate) {
				t.Fatalf("second Once: %v, want ErrDuplicate", err)
			}

			var wins, dups atomic.Int32
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := reply
					r.ID = "race-" + string(rune('a'+i))
					_, err := d.Once(ctx, "svc", "m2", func(context.Context) (message.Envelope, error) { return r, nil })
					switch {
					case err == nil:
						wins.Add(1)
					case errors.Is(err, participant.ErrDuplicate):
						dups.Add(1)
					default:
						t.Errorf("racing Once: %v", err)
					}
				}()
			}
			wg.Wait()
			if wins.Load() != 1 || dups.Load() != 7 {
				t.Fatalf("racing Once: %d wins, %d duplicates; want 1 and 7", wins.Load(), dups.Load())
			}
		})
	}
}
