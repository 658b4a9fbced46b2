package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/workflows"
)

// call sends method path with body (nil: none; a string: sent as is) to
// the engine's admin API and decodes a JSON answer into out (nil: skip).
func call(t *testing.T, e *engine.Engine, method, path string, body any, header map[string]string, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.AdminURL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var apiErr engine.APIError
		if json.Unmarshal(data, &apiErr) == nil && apiErr.Error != "" {
			return resp.StatusCode, apiErr.Error
		}
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode, string(data)
}

func orderJSON(t *testing.T, in orders.Input) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAdminStartIsIdempotentByKey(t *testing.T) {
	e := newOrdersEngine(t, engine.Options{})
	req := engine.StartRequest{Workflow: orders.WorkflowName, Input: orderJSON(t, orders.Input{OrderID: "o-1", SKU: "a", Qty: 1, Amount: 1, Address: "x"})}
	var first, again, other engine.StartResponse
	if st, body := call(t, e, "POST", "/v1/sagas", req, map[string]string{"Idempotency-Key": "k-1"}, &first); st != 201 || !first.Created {
		t.Fatalf("first start = %d %s, want 201 created", st, body)
	}
	if st, body := call(t, e, "POST", "/v1/sagas", req, map[string]string{"Idempotency-Key": "k-1"}, &again); st != 200 || again.Created || again.ID != first.ID {
		t.Fatalf("repeated start = %d %s, want 200 with the same ID %s", st, body, first.ID)
	}
	req.IdempotencyKey = "k-2"
	if st, body := call(t, e, "POST", "/v1/sagas", req, nil, &other); st != 201 || other.ID == first.ID {
		t.Fatalf("start with another key = %d %s, want a new saga", st, body)
	}
	if st, body := call(t, e, "POST", "/v1/sagas", req, map[string]string{"Idempotency-Key": "k-3"}, nil); st != 400 || !strings.Contains(body, "differ") {
		t.Errorf("header and field that differ = %d %s, want 400", st, body)
	}
	waitSaga(t, e, first.ID)
	waitSaga(t, e, other.ID)
}

func TestAdminListFiltersAndPages(t *testing.T) {
	e := newOrdersEngine(t, engine.Options{})
	var ids []string
	for i, addr := range []string{"a", "b", orders.Unreachable, "c", "d"} {
		id := startOrder(t, e, orders.Input{OrderID: "o-" + string(rune('1'+i)), SKU: "s", Qty: 1, Amount: 1, Address: addr})
		ids = append(ids, id)
		waitSaga(t, e, id)
	}
	mid := time.Now()
	late := startOrder(t, e, orders.Input{OrderID: "late", SKU: "s", Qty: 1, Amount: 1, Address: "z"})
	waitSaga(t, e, late)

	list := func(query string) engine.ListResponse {
		t.Helper()
		var resp engine.ListResponse
		if st, body := call(t, e, "GET", "/v1/sagas?"+query, nil, nil, &resp); st != 200 {
			t.Fatalf("GET /v1/sagas?%s = %d %s", query, st, body)
		}
		return resp
	}
	if got := list("correlation_id=o-3").Sagas; len(got) != 1 || got[0].ID != ids[2] || got[0].Status != workflows.StatusCompensated {
		t.Errorf("by correlation ID: %+v, want saga %s, compensated", got, ids[2])
	}
	if got := list("status=compensated&type=" + orders.WorkflowName).Sagas; len(got) != 1 {
		t.Errorf("compensated: %d sagas, want 1", len(got))
	}
	if got := list("created_from=" + mid.UTC().Format(time.RFC3339Nano)).Sagas; len(got) != 1 || got[0].ID != late {
		t.Errorf("created from %s: %+v, want only %s", mid, got, late)
	}
	if got := list("created_to=" + mid.UTC().Format(time.RFC3339Nano)).Sagas; len(got) != 5 {
		t.Errorf("created before %s: %d sagas, want 5", mid, len(got))
	}
	// Pages of 2, with and without a post-filter, cover every saga once.
	for _, filter := range []string{"", "&status=completed,compensated&created_to=" + time.Now().Add(time.Hour).UTC().Format(time.RFC3339)} {
		seen := map[string]bool{}
		after, pages := "", 0
		for {
			resp := list("limit=2&after=" + after + filter)
			pages++
			for _, s := range resp.Sagas {
				if seen[s.ID] {
					t.Fatalf("saga %s on two pages", s.ID)
				}
				seen[s.ID] = true
			}
			if resp.Next == "" || pages > 10 {
				break
			}
			after = resp.Next
		}
		if len(seen) != 6 || pages != 3 {
			t.Errorf("filter %q: %d sagas in %d pages, want 6 in 3", filter, len(seen), pages)
		}
	}
	for _, c := range []struct{ query, mention string }{
		{"limit=0", "limit"},
		{"status=weird", `status "weird"`},
		{"created_from=yesterday", "created_from"},
		{"colour=red", `unknown query parameter "colour"`},
		{"type=a&workflow=b", "give one"},
	} {
		if st, body := call(t, e, "GET", "/v1/sagas?"+c.query, nil, nil, nil); st != 400 || !strings.Contains(body, c.mention) {
			t.Errorf("GET /v1/sagas?%s = %d %s, want 400 mentioning %q", c.query, st, body, c.mention)
		}
	}
}

func TestAdminHistorySignalAndWorkflows(t *testing.T) {
	slow := workflows.RetryPolicy{MaxAttempts: 3, InitialInterval: 300 * time.Millisecond, Multiplier: 1}
	e := orders.Register(engine.New(engine.Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: quietLogger()}), slow)
	runEngine(t, e)
	id := startOrder(t, e, orders.Input{OrderID: "o-sig", SKU: "s", Qty: 1, Amount: 1, Address: orders.Unreachable})
	if st, body := call(t, e, "POST", "/v1/sagas/"+id+"/signal", engine.SignalRequest{Name: "approved", Payload: json.RawMessage(`{"by":"ops"}`)}, nil, nil); st != 202 {
		t.Fatalf("signal = %d %s", st, body)
	}
	s := waitSaga(t, e, id)
	var h engine.HistoryResponse
	if st, body := call(t, e, "GET", "/v1/sagas/"+id+"/history", nil, nil, &h); st != 200 {
		t.Fatalf("history = %d %s", st, body)
	}
	events := map[string]int{}
	for _, r := range h.History {
		events[r.Event]++
		if r.At.IsZero() {
			t.Errorf("record %+v has no time", r)
		}
		if r.Event == workflows.EventSignalReceived && r.Detail != "approved" {
			t.Errorf("signal record %+v, want detail approved", r)
		}
		if (r.Event == workflows.EventStepStarted || r.Event == workflows.EventStepSucceeded) && r.MessageID == "" {
			t.Errorf("record %+v names no message", r)
		}
	}
	for ev, n := range map[string]int{workflows.EventSignalReceived: 1, workflows.EventStepRetryScheduled: 2, workflows.EventCompensationSucceeded: 2, workflows.EventCompensated: 1} {
		if events[ev] != n {
			t.Errorf("%d %s records, want %d; history: %+v", events[ev], ev, n, h.History)
		}
	}
	if st, body := call(t, e, "POST", "/v1/sagas/"+id+"/signal", engine.SignalRequest{Name: "late"}, nil, nil); st != 409 || !strings.Contains(body, string(s.Status)) {
		t.Errorf("signal to a %s saga = %d %s, want 409", s.Status, st, body)
	}
	for _, c := range []struct {
		path, body string
		status     int
		mention    string
	}{
		{"/v1/sagas/" + id + "/signal", `{}`, 400, `"name" is required`},
		{"/v1/sagas/" + id + "/signal", `{"name":"x","extra":1}`, 400, "extra"},
		{"/v1/sagas/" + id + "/signal", `{"name":"x"} {}`, 400, "after the JSON object"},
		{"/v1/sagas/" + id + "/signal", `{"name":"` + strings.Repeat("x", engine.MaxRequestBody) + `"}`, 413, "too large"},
		{"/v1/sagas/nope/signal", `{"name":"x"}`, 404, "saga not found"},
		{"/v1/sagas/" + id + "/retry", ``, 409, "does not need attention"},
	} {
		if st, body := call(t, e, "POST", c.path, c.body, nil, nil); st != c.status || !strings.Contains(body, c.mention) {
			t.Errorf("POST %s %.40q = %d %.200s, want %d mentioning %q", c.path, c.body, st, body, c.status, c.mention)
		}
	}

	var wfs engine.WorkflowsResponse
	if st, body := call(t, e, "GET", "/v1/workflows", nil, nil, &wfs); st != 200 || len(wfs.Workflows) != 1 {
		t.Fatalf("workflows = %d %s", st, body)
	}
	var wf engine.WorkflowInfo
	if st, body := call(t, e, "GET", "/v1/workflows/"+orders.WorkflowName+"?version=1", nil, nil, &wf); st != 200 || !strings.HasPrefix(wf.Mermaid, "flowchart") || len(wf.Steps) == 0 {
		t.Errorf("workflow = %d %s, want steps and a Mermaid flowchart", st, body)
	}
	if st, _ := call(t, e, "GET", "/v1/workflows/nope", nil, nil, nil); st != 404 {
		t.Errorf("unknown workflow = %d, want 404", st)
	}
}

// parkWorkflow has one local step whose compensation fails while fail is
// set, and a second step that always fails: so it parks.
func parkWorkflow(fail *atomic.Bool) workflows.Workflow {
	type in struct{}
	type st struct{}
	return workflows.New("parking", 1, func(in) (st, error) { return st{}, nil }).
		Do("book", workflows.LocalStep[st]{
			Run: func(context.Context, *st) error { return nil },
			Compensate: func(context.Context, *st) error {
				if fail.Load() {
					return workflows.Permanent(errors.New("cannot unbook"))
				}
				return nil
			},
		}).
		Do("pay", workflows.LocalStep[st]{Run: func(context.Context, *st) error { return workflows.Permanent(errors.New("declined")) }})
}

func TestAdminRetryResumesAParkedSaga(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	e := engine.New(engine.Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: quietLogger()}).Register(parkWorkflow(&fail))
	runEngine(t, e)
	id, err := e.StartSaga(context.Background(), engine.StartRequest{Workflow: "parking", Input: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if s := waitSaga(t, e, id); s.Status != workflows.StatusNeedsAttention {
		t.Fatalf("status %s, want needs_attention", s.Status)
	}
	var list engine.ListResponse
	call(t, e, "GET", "/v1/sagas?status=needs_attention", nil, nil, &list)
	if len(list.Sagas) != 1 {
		t.Fatalf("%d parked sagas listed, want 1", len(list.Sagas))
	}
	fail.Store(false)
	if st, body := call(t, e, "POST", "/v1/sagas/"+id+"/retry", engine.ReasonRequest{Reason: "unbooking fixed"}, nil, nil); st != 202 {
		t.Fatalf("retry = %d %s", st, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := e.GetSaga(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if s.Status == workflows.StatusCompensated {
			if last := s.History[len(s.History)-3]; last.Event != workflows.EventRetryRequested || last.Detail != "unbooking fixed" {
				t.Errorf("history before the end: %+v, want the retry request", s.History[len(s.History)-3:])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %s after retry, want compensated; history %+v", s.Status, s.History)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
