package engine_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport/inmem"
)

func TestAdminDeadLetters(t *testing.T) {
	tr := inmem.New(inmem.WithPartitions(4))
	t.Cleanup(func() { _ = tr.Close() })
	e := newOrdersEngine(t, engine.Options{Transport: tr, Partitions: 4})
	ctx := context.Background()
	var bad []message.Envelope
	for i := range 3 {
		m := message.Envelope{ID: message.NewID(), Kind: message.KindCommand, Type: "nobody.Nothing.v1",
			Destination: orders.InventoryService, Key: "k" + string(rune('0'+i)), OccurredAt: time.Now(), Payload: json.RawMessage(`{}`)}
		if err := tr.Publish(ctx, m); err != nil {
			t.Fatal(err)
		}
		bad = append(bad, m)
	}
	var resp engine.DeadLettersResponse
	deadline := time.Now().Add(5 * time.Second)
	for len(resp.DeadLetters) < 3 && time.Now().Before(deadline) {
		call(t, e, "GET", "/v1/dead-letters?queue="+orders.InventoryService, nil, nil, &resp)
		time.Sleep(5 * time.Millisecond)
	}
	if len(resp.DeadLetters) != 3 {
		t.Fatalf("%d dead letters, want 3", len(resp.DeadLetters))
	}
	var one struct {
		Message message.Envelope `json:"message"`
		Reason  string           `json:"reason"`
	}
	if st, body := call(t, e, "GET", "/v1/dead-letters/"+bad[0].ID, nil, nil, &one); st != 200 || one.Message.Type != "nobody.Nothing.v1" || !strings.Contains(one.Reason, "unknown message type") {
		t.Errorf("inspect = %d %s", st, body)
	}
	var res engine.DeadLetterResult
	if st, body := call(t, e, "POST", "/v1/dead-letters/discard", engine.DeadLetterIDs{IDs: []string{bad[0].ID, "nope"}}, nil, &res); st != 200 || len(res.Done) != 1 || len(res.Missing) != 1 {
		t.Errorf("discard = %d %s, want one done and one missing", st, body)
	}
	if st, _ := call(t, e, "POST", "/v1/dead-letters/"+bad[0].ID+"/discard", nil, nil, nil); st != 404 {
		t.Errorf("second discard = %d, want 404", st)
	}
	// A replay hands the message to the aggregate again; still unknown, it
	// comes back to the dead letters, replayed once more.
	if st, body := call(t, e, "POST", "/v1/dead-letters/"+bad[1].ID+"/replay", nil, nil, &res); st != 200 || len(res.Done) != 1 {
		t.Fatalf("replay = %d %s", st, body)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		if st, _ := call(t, e, "GET", "/v1/dead-letters/"+bad[1].ID, nil, nil, nil); st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replayed message was not handled (and dead-lettered) again")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st, body := call(t, e, "GET", "/v1/dead-letters?limit=0", nil, nil, nil); st != 400 || !strings.Contains(body, "limit") {
		t.Errorf("limit=0 = %d %s, want 400", st, body)
	}
	if st, body := call(t, e, "POST", "/v1/dead-letters/replay", `{"ids":[]}`, nil, nil); st != 400 || !strings.Contains(body, "no message IDs") {
		t.Errorf("empty replay = %d %s, want 400", st, body)
	}
}
