package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/workflows"
)

func TestBadMessagesAreDeadLetteredAndDisturbNothing(t *testing.T) {
	tr := inmem.New(inmem.WithPartitions(4))
	t.Cleanup(func() { _ = tr.Close() })
	e := newOrdersEngine(t, engine.Options{Transport: tr, Partitions: 4})
	ctx := context.Background()

	// Both go to the key of a saga that then runs normally.
	unknown := message.Envelope{ID: message.NewID(), Kind: message.KindCommand, Type: "nobody.Nothing.v1",
		Destination: orders.InventoryService, Key: "o-bad", OccurredAt: time.Now(), Payload: json.RawMessage(`{}`)}
	malformed := message.Envelope{ID: message.NewID(), Kind: message.KindCommand, Type: "inventory.ReserveStock.v1",
		Destination: orders.InventoryService, Key: "o-bad", OccurredAt: time.Now(), Payload: json.RawMessage(`{"qty":"lots"}`)}
	for _, m := range []message.Envelope{unknown, malformed} {
		if err := tr.Publish(ctx, m); err != nil {
			t.Fatalf("publish %s: %v", m.Type, err)
		}
	}
	id := startOrder(t, e, orders.Input{OrderID: "o-bad", SKU: "x", Qty: 1, Amount: 1, Address: "a"})
	if s := waitSaga(t, e, id); s.Status != workflows.StatusCompleted {
		t.Fatalf("saga next to bad messages: status %s, want completed", s.Status)
	}

	var dls []transport.DeadLetter
	deadline := time.Now().Add(5 * time.Second)
	for len(dls) < 2 && time.Now().Before(deadline) {
		var err error
		if dls, err = tr.DeadLetters(ctx, 10); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	reasons := map[string]string{}
	for _, dl := range dls {
		reasons[dl.Message.ID] = dl.Reason
	}
	for _, c := range []struct {
		id   string
		want []string
	}{
		{unknown.ID, []string{"unknown message type", "nobody.Nothing.v1"}},
		{malformed.ID, []string{"malformed message", "inventory.ReserveStock.v1", "qty"}},
	} {
		reason, ok := reasons[c.id]
		if !ok {
			t.Errorf("message %s not dead-lettered (dead letters: %+v)", c.id, dls)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(reason, w) {
				t.Errorf("dead-letter reason %q does not mention %q", reason, w)
			}
		}
	}
	checkEffects(t, e.Store(), "o-bad", completedEffects)
}

func TestAdminAPIAnswersBadRequestsWithClearErrors(t *testing.T) {
	e := newOrdersEngine(t, engine.Options{})
	base := e.AdminURL()
	cases := []struct {
		name, method, path, body string
		status                   int
		mention                  string
	}{
		{"not JSON", "POST", "/v1/sagas", `{"workflow": `, 400, "not valid JSON"},
		{"unknown field", "POST", "/v1/sagas", `{"workflow":"orders.PlaceOrder","colour":"red"}`, 400, "colour"},
		{"no workflow", "POST", "/v1/sagas", `{}`, 400, `"workflow" is required`},
		{"unknown workflow", "POST", "/v1/sagas", `{"workflow":"nope"}`, 404, `"nope"`},
		{"input of wrong shape", "POST", "/v1/sagas", `{"workflow":"orders.PlaceOrder","input":{"qty":"many"}}`, 400, "qty"},
		{"input refused by init", "POST", "/v1/sagas", `{"workflow":"orders.PlaceOrder","input":{"sku":"x"}}`, 400, "order_id is required"},
		{"empty body", "POST", "/v1/sagas", ``, 400, "empty"},
		{"oversized body", "POST", "/v1/sagas", `{"workflow":"` + strings.Repeat("a", engine.MaxRequestBody) + `"}`, 413, "too large"},
		{"unknown saga", "GET", "/v1/sagas/does-not-exist", "", 404, "does-not-exist"},
		{"bad status filter", "GET", "/v1/sagas?status=bogus", "", 400, "bogus"},
		{"bad limit", "GET", "/v1/sagas?limit=-3", "", 400, "limit"},
		{"cancel unknown saga", "POST", "/v1/sagas/nope/cancel", "", 404, "nope"},
		{"no such route", "GET", "/v2/things", "", 404, "no route"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, base+c.path, bytes.NewBufferString(c.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var apiErr engine.APIError
			if err := json.NewDecoder(resp.Body).Decode(&apiErr); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if resp.StatusCode != c.status || !strings.Contains(apiErr.Error, c.mention) {
				t.Errorf("%s %s: %d %q, want %d mentioning %q", c.method, c.path, resp.StatusCode, apiErr.Error, c.status, c.mention)
			}
		})
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s = %d, want 200", path, resp.StatusCode)
		}
	}
}
