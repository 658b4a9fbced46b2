package engine_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/actors"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/customers"
	"github.com/sagaflow/sagaflow/projection"
	"github.com/sagaflow/sagaflow/readmodel"
	rmmongo "github.com/sagaflow/sagaflow/readmodel/mongo"
)

// newCustomersEngine runs an engine with the customer aggregate and its
// two projections on s (for MongoDB, the read models too).
func newCustomersEngine(t *testing.T, s testStore, token string) *engine.Engine {
	t.Helper()
	opts := s.options(t)
	if s.kind == "mongo" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rm, err := rmmongo.Open(ctx, s.uri, rmmongo.WithDatabase(s.mongoDB))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rm.Close() })
		opts.ReadModels = rm
	}
	opts.AdminAddr, opts.AdminToken, opts.Logger = "127.0.0.1:0", token, quietLogger()
	opts.ProjectionGapWait = 500 * time.Millisecond
	e := customers.Setup(engine.New(opts))
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	runEngine(t, e)
	return e
}

func execute(t *testing.T, e *engine.Engine, key string, cmd any) engine.CommandResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := e.Execute(ctx, customers.Service, key, cmd)
	if err != nil {
		t.Fatalf("execute %T on %s: %v", cmd, key, err)
	}
	return res
}

func readDoc[T any](t *testing.T, e *engine.Engine, model, key string) (T, readmodel.Doc) {
	t.Helper()
	var v T
	d, err := e.ReadModel(context.Background(), model, key)
	if err != nil {
		t.Fatalf("read %s/%s: %v", model, key, err)
	}
	if err := json.Unmarshal(d.Body, &v); err != nil {
		t.Fatal(err)
	}
	return v, d
}

// modelDocs returns key -> body and version of every document of model.
// (Not the stream and sequence of a document's latest change: a document
// fed by several streams may be last changed by another of them in a
// rebuild, which replays stream by stream.)
func modelDocs(t *testing.T, e *engine.Engine, model string) map[string]string {
	t.Helper()
	list, err := e.ListReadModel(context.Background(), model, "", readmodel.MaxListLimit)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(list))
	for _, d := range list {
		out[d.Key] = fmt.Sprintf("%s v%d", d.Body, d.Version)
	}
	return out
}

// Commands through the engine build both read models live; each query
// after a command waits for the sequence the command produced and sees
// it (read your writes); a rebuild from the event store gives the same
// read models; only public events are put in the outbox.
func TestProjectionsLiveReadYourWritesAndRebuild(t *testing.T) {
	forEachStore(t, func(t *testing.T, s testStore) {
		e := newCustomersEngine(t, s, "")
		classes := []string{"A", "B", "B", "C", "B", "A"}
		for i, class := range classes {
			id := fmt.Sprintf("c-%d", i)
			execute(t, e, id, &customers.Register{Name: "name " + id, Email: id + "@example.com"})
			execute(t, e, id, &customers.AddNote{Text: "internal only"})
			res := execute(t, e, id, &customers.Classify{Class: class, Score: 50 + i})
			if res.Version != 3 || res.Events != 1 || res.Sequence != 3 || res.Stream != actors.AggregateStream(customers.AggregateName, id) {
				t.Fatalf("classify result %+v, want commit 3 with event 3 of %s", res, id)
			}
			// Read your writes: wait for the command's sequence, then read.
			for _, model := range []string{customers.ByID, customers.ByClass} {
				if err := e.WaitForReadModel(context.Background(), model, res.Stream, res.Sequence, 10*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			c, d := readDoc[customers.Customer](t, e, customers.ByID, id)
			if c.Class != class || d.Seq != 3 {
				t.Fatalf("%s after its classification: %+v (seq %d), want class %s", id, c, d.Seq, class)
			}
		}
		// Reclassify c-1 from B to A: it moves between class documents.
		res := execute(t, e, "c-1", &customers.Classify{Class: "A", Score: 99})
		for _, model := range []string{customers.ByID, customers.ByClass} {
			if err := e.WaitForReadModel(context.Background(), model, res.Stream, res.Sequence, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		b, _ := readDoc[customers.Class](t, e, customers.ByClass, "B")
		a, _ := readDoc[customers.Class](t, e, customers.ByClass, "A")
		if strings.Join(b.Customers, ",") != "c-2,c-4" || strings.Join(a.Customers, ",") != "c-0,c-1,c-5" {
			t.Fatalf("class B %v, class A %v; want c-2,c-4 and c-0,c-1,c-5", b.Customers, a.Customers)
		}
		// A rejected command records no event: nothing to wait for.
		if res := execute(t, e, "c-1", &customers.Classify{Class: "Z"}); res.Events != 0 || res.Sequence != 0 {
			t.Fatalf("rejected command: %+v, want no events", res)
		}
		// The event store keeps internal events; the outbox has public ones.
		commits, err := e.Store().Load(context.Background(), actors.AggregateStream(customers.AggregateName, "c-0"), 1)
		if err != nil {
			t.Fatal(err)
		}
		var outbox, internal []string
		for _, c := range commits {
			for _, m := range c.Outbox {
				outbox = append(outbox, m.Type)
			}
			for _, ev := range c.Events {
				internal = append(internal, ev.Type)
			}
		}
		if strings.Join(outbox, ",") != "crm.public.CustomerRegistered.v1,crm.public.CustomerClassificationUpdated.v1" ||
			strings.Join(internal, ",") != "crm.Registered.v1,crm.NoteAdded.v1,crm.Classified.v1" {
			t.Fatalf("outbox %v, events %v", outbox, internal)
		}

		for _, model := range []string{customers.ByID, customers.ByClass} {
			live := modelDocs(t, e, model)
			var last [2]int
			if err := e.RebuildProjection(context.Background(), model, func(done, total int) { last = [2]int{done, total} }); err != nil {
				t.Fatal(err)
			}
			rebuilt := modelDocs(t, e, model)
			if len(live) == 0 || fmt.Sprint(live) != fmt.Sprint(rebuilt) {
				t.Fatalf("%s rebuilt differs from live:\nlive    %v\nrebuilt %v", model, live, rebuilt)
			}
			if last != [2]int{len(classes), len(classes)} {
				t.Fatalf("%s rebuild progress ended at %v, want %d/%d", model, last, len(classes), len(classes))
			}
		}
		// Live events go on after a rebuild.
		res = execute(t, e, "c-9", &customers.Register{Name: "late"})
		if err := e.WaitForReadModel(context.Background(), customers.ByID, res.Stream, res.Sequence, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		err = e.WaitForReadModel(context.Background(), customers.ByID, res.Stream, res.Sequence+1, 50*time.Millisecond)
		if !errors.Is(err, engine.ErrNotReached) {
			t.Fatalf("wait for a sequence never produced: %v, want ErrNotReached", err)
		}
	})
}

// adminGet performs a GET on the admin API and decodes the JSON body.
func adminDo(t *testing.T, method, url, token string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, url, err)
		}
	}
	return resp.StatusCode
}

func TestProjectionsAdminAPI(t *testing.T) {
	e := newCustomersEngine(t, testStore{kind: "embedded", dir: t.TempDir()}, "s3cret")
	base, tok := e.AdminURL(), "s3cret"
	res := execute(t, e, "c-1", &customers.Register{Name: "Ada"})
	execute(t, e, "c-1", &customers.Classify{Class: "B"})

	var list engine.ProjectionsResponse
	if code := adminDo(t, "GET", base+"/v1/projections", tok, &list); code != 200 || len(list.Projections) != 2 || list.Projections[0].Name != customers.ByID {
		t.Fatalf("list: %d %+v", code, list)
	}
	var doc readmodel.Doc
	url := fmt.Sprintf("%s/v1/readmodels/%s/c-1?stream=%s&min_seq=2&wait=5s", base, customers.ByID, res.Stream)
	if code := adminDo(t, "GET", url, tok, &doc); code != 200 || !strings.Contains(strings.ReplaceAll(string(doc.Body), " ", ""), `"class":"B"`) {
		t.Fatalf("get with min_seq: %d %s", code, doc.Body)
	}
	var apiErr engine.APIError
	url = fmt.Sprintf("%s/v1/readmodels/%s/c-1?stream=%s&min_seq=9&wait=100ms", base, customers.ByID, res.Stream)
	if code := adminDo(t, "GET", url, tok, &apiErr); code != http.StatusGatewayTimeout || !strings.Contains(apiErr.Error, "not 9") {
		t.Fatalf("get with an unreached min_seq: %d %q, want 504", code, apiErr.Error)
	}
	for _, c := range []struct {
		url  string
		code int
	}{
		{"/v1/readmodels/customers/nobody", 404},
		{"/v1/readmodels/nosuch/c-1", 404},
		{"/v1/readmodels/customers/c-1?min_seq=x&stream=s", 400},
		{"/v1/readmodels/customers/c-1?min_seq=2", 400},
		{"/v1/readmodels/customers/c-1?wait=1s", 400},
		{"/v1/readmodels/customers/c-1?min_seq=2&stream=s&wait=1h", 400},
		{"/v1/readmodels/customers?limit=0", 400},
		{"/v1/readmodels/stream", 400},
		{"/v1/projections/nosuch", 404},
	} {
		apiErr = engine.APIError{}
		if code := adminDo(t, "GET", base+c.url, tok, &apiErr); code != c.code || apiErr.Error == "" {
			t.Errorf("GET %s: %d %q, want %d with a message", c.url, code, apiErr.Error, c.code)
		}
	}
	if code := adminDo(t, "GET", base+"/v1/projections", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d, want 401", code)
	}
	var st struct {
		Rebuild *struct {
			Running bool `json:"running"`
			Done    int  `json:"streams_done"`
			Total   int  `json:"streams_total"`
		} `json:"rebuild"`
	}
	if code := adminDo(t, "POST", base+"/v1/projections/customers/rebuild", tok, &st); code != http.StatusAccepted || st.Rebuild == nil {
		t.Fatalf("rebuild: %d %+v", code, st)
	}
	for deadline := time.Now().Add(10 * time.Second); st.Rebuild.Running; {
		if time.Now().After(deadline) {
			t.Fatal("rebuild did not finish")
		}
		time.Sleep(10 * time.Millisecond)
		adminDo(t, "GET", base+"/v1/projections/customers", tok, &st)
	}
	if st.Rebuild.Done != 1 || st.Rebuild.Total != 1 {
		t.Fatalf("rebuild status %+v, want 1/1", st.Rebuild)
	}
	var rl engine.ReadModelListResponse
	if code := adminDo(t, "GET", base+"/v1/readmodels/customers.byClass?limit=1", tok, &rl); code != 200 || len(rl.Docs) != 1 || rl.Docs[0].Key != "B" || rl.Next != "B" {
		t.Fatalf("list read model: %d %+v", code, rl)
	}
}

// sseEvent is one server-sent event.
type sseEvent struct{ id, event, data string }

// sseClient reads a read-model stream with a real HTTP client.
type sseClient struct {
	resp       *http.Response
	events     chan sseEvent
	done       chan struct{}
	heartbeats atomic.Int64
}

func openSSE(t *testing.T, url, token, lastID string) *sseClient {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{resp: resp, events: make(chan sseEvent, 100), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == ": heartbeat":
				c.heartbeats.Add(1)
			case line == "":
				if ev.data != "" {
					c.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() { _ = c.resp.Body.Close(); <-c.done }

func (c *sseClient) next(t *testing.T) (sseEvent, readmodel.Change) {
	t.Helper()
	select {
	case ev := <-c.events:
		var ch readmodel.Change
		if err := json.Unmarshal([]byte(ev.data), &ch); err != nil {
			t.Fatalf("event data %q: %v", ev.data, err)
		}
		return ev, ch
	case <-time.After(10 * time.Second):
		t.Fatal("no server-sent event within 10s")
		return sseEvent{}, readmodel.Change{}
	}
}

// A client follows one customer's document over server-sent events,
// disconnects, misses two changes, and gets exactly those when it
// reconnects with Last-Event-ID; the stream ends when the engine stops.
func TestReadModelChangesOverSSE(t *testing.T) {
	forEachStore(t, func(t *testing.T, s testStore) {
		ctx, cancel := context.WithCancel(context.Background())
		opts := s.options(t)
		opts.AdminAddr, opts.AdminToken, opts.Logger = "127.0.0.1:0", "tok", quietLogger()
		opts.StreamHeartbeat = 50 * time.Millisecond
		if s.kind == "mongo" {
			rm, err := rmmongo.Open(ctx, s.uri, rmmongo.WithDatabase(s.mongoDB))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = rm.Close() })
			opts.ReadModels = rm
		}
		e := customers.Setup(engine.New(opts))
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		t.Cleanup(cancel)
		select {
		case <-e.Ready():
		case err := <-done:
			t.Fatal(err)
		}
		url := e.AdminURL() + "/v1/readmodels/stream?model=customers&key=c-7"
		execute(t, e, "c-6", &customers.Register{Name: "before the client"})

		c := openSSE(t, url, "tok", "")
		execute(t, e, "c-6", &customers.Classify{Class: "A"}) // another key: filtered out
		execute(t, e, "c-7", &customers.Register{Name: "Grace"})
		ev, ch := c.next(t)
		if ev.event != "customers" || ch.Key != "c-7" || ch.Version != 1 || ev.id != fmt.Sprint(ch.Position) || !strings.Contains(string(ch.Body), "Grace") {
			t.Fatalf("first event %+v %+v", ev, ch)
		}
		c.close()

		// While disconnected: two changes of c-7 and one of another key.
		execute(t, e, "c-7", &customers.Classify{Class: "B"})
		execute(t, e, "c-6", &customers.Classify{Class: "C"})
		res := execute(t, e, "c-7", &customers.Classify{Class: "C"})
		if err := e.WaitForReadModel(ctx, customers.ByID, res.Stream, res.Sequence, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		c2 := openSSE(t, url, "tok", ev.id)
		_, ch1 := c2.next(t)
		_, ch2 := c2.next(t)
		if ch1.Key != "c-7" || ch1.Version != 2 || !strings.Contains(string(ch1.Body), `"B"`) || ch2.Version != 3 || !strings.Contains(string(ch2.Body), `"C"`) || ch2.Position <= ch1.Position {
			t.Fatalf("replayed after reconnect: %+v then %+v, want c-7 v2 (B) then v3 (C)", ch1, ch2)
		}
		select {
		case extra := <-c2.events:
			t.Fatalf("replay sent more than was missed: %+v", extra)
		case <-time.After(200 * time.Millisecond):
		}
		// Live again after the replay.
		execute(t, e, "c-7", &customers.Classify{Class: "A"})
		if _, ch := c2.next(t); ch.Version != 4 {
			t.Fatalf("live change after replay: %+v", ch)
		}

		// An idle stream sends heartbeats.
		for deadline := time.Now().Add(10 * time.Second); c2.heartbeats.Load() < 2; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d heartbeats in 10s on an idle stream, want 2", c2.heartbeats.Load())
			}
		}

		// Without the token the stream is refused.
		req, _ := http.NewRequest("GET", url, nil)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("stream without token: %v %v", resp, err)
		}

		cancel()
		select {
		case <-c2.done:
		case <-time.After(15 * time.Second):
			t.Fatal("stream still open 15s after the engine was stopped")
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestProjectionRegistrationErrors(t *testing.T) {
	type unregistered struct{ X int }
	p := projection.New("p")
	projection.On(p, func(context.Context, readmodel.Tx, *unregistered, projection.Meta) error { return nil })
	e := engine.New(engine.Options{DataDir: t.TempDir(), AdminAddr: engine.AdminOff}).Register(p, p, projection.New(""))
	err := e.Err()
	for _, want := range []string{`projection "p"`, "register it with engine.Message first", "handles no event"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("registration error %v lacks %q", err, want)
		}
	}
	// An aggregate whose public event type is not registered.
	e2 := engine.New(engine.Options{DataDir: t.TempDir(), AdminAddr: engine.AdminOff}).Register(
		engine.Message[customers.Register]("crm.Register.v1"), engine.Message[customers.Classify]("crm.Classify.v1"),
		engine.Message[customers.AddNote]("crm.AddNote.v1"), engine.Message[customers.Registered]("crm.Registered.v1"),
		engine.Message[customers.Classified]("crm.Classified.v1"), engine.Message[customers.NoteAdded]("crm.NoteAdded.v1"),
		customers.Aggregate())
	if err := e2.Err(); err == nil || !strings.Contains(err.Error(), "public event") {
		t.Fatalf("aggregate with unregistered public events: %v", err)
	}
}
