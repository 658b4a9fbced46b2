package projection_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/examples/customers"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/projection"
	"github.com/sagaflow/sagaflow/readmodel"
	rmembedded "github.com/sagaflow/sagaflow/readmodel/embedded"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
	"github.com/sagaflow/sagaflow/transport/inmem"
)

// rig is one projection runner over an in-process transport, a bbolt
// read-model store and a bbolt event store.
type rig struct {
	t      *testing.T
	reg    *message.Registry
	tr     *inmem.Transport
	rm     readmodel.Store
	events store.Store
	agg    aggregate.Type
	runner *projection.Runner
}

func newRig(t *testing.T, gapWait time.Duration) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reg := message.NewRegistry(nil)
	for name, v := range map[string]any{
		"crm.Registered.v1": customers.Registered{}, "crm.Classified.v1": customers.Classified{}, "crm.NoteAdded.v1": customers.NoteAdded{},
		"crm.public.CustomerRegistered.v1":            customers.CustomerRegistered{},
		"crm.public.CustomerClassificationUpdated.v1": customers.CustomerClassificationUpdated{},
	} {
		if err := reg.RegisterType(name, reflectTypeOf(v)); err != nil {
			t.Fatal(err)
		}
	}
	tr := inmem.New(inmem.WithPartitions(4))
	rm, err := rmembedded.Open(filepath.Join(t.TempDir(), "rm.db"))
	if err != nil {
		t.Fatal(err)
	}
	es, err := embedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, reg: reg, tr: tr, rm: rm, events: es, agg: customers.Aggregate()}
	r.runner, err = projection.NewRunner(customers.ByIDProjection(), projection.Config{
		Source:     projection.Source{Store: es, Registry: reg, Aggregates: []aggregate.Type{r.agg}},
		ReadModels: rm, Transport: tr, Partitions: 4, GapWait: gapWait, RetryDelay: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.runner.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.runner.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
		_ = tr.Close()
		_ = rm.Close()
		_ = es.Close()
	})
	return r
}

// foreign publishes a public event of another service's stream (no
// stream header, nothing in the local store).
func (r *rig) foreign(key string, seq uint64, public any) {
	r.t.Helper()
	env, err := r.reg.New(message.KindEvent, key, public)
	if err != nil {
		r.t.Fatal(err)
	}
	env.Source, env.Sequence, env.OccurredAt = "analysis", seq, time.Now()
	if err := r.tr.Publish(context.Background(), env); err != nil {
		r.t.Fatal(err)
	}
}

// record appends internal events to the customer's stream, one commit
// each, and returns the public envelopes the aggregate actor would have
// put in the outbox, by sequence (absent: not published).
func (r *rig) record(id string, events ...any) map[uint64]message.Envelope {
	r.t.Helper()
	stream := "agg/" + customers.AggregateName + "/" + id
	out := make(map[uint64]message.Envelope)
	for i, ev := range events {
		typ, payload, err := r.reg.Encode(ev)
		if err != nil {
			r.t.Fatal(err)
		}
		seq := uint64(i + 1)
		in := message.Envelope{ID: message.NewID(), Kind: message.KindEvent, Type: typ, Source: customers.Service, Key: id, Sequence: seq, OccurredAt: time.Now(), Payload: payload}
		c := store.Commit{Stream: stream, Version: seq, Events: []message.Envelope{in}, At: time.Now()}
		if seq == 1 {
			c.Meta = &store.Meta{Kind: "aggregate", Type: customers.AggregateName, CreatedAt: c.At, UpdatedAt: c.At}
		}
		if err := r.events.Append(context.Background(), c); err != nil {
			r.t.Fatal(err)
		}
		pub, ok, err := aggregate.PublicEnvelope(r.reg, r.agg, stream, seq, in, ev)
		if err != nil {
			r.t.Fatal(err)
		}
		if ok {
			out[seq] = pub
		}
	}
	return out
}

func (r *rig) publish(envs ...message.Envelope) {
	r.t.Helper()
	for _, e := range envs {
		if err := r.tr.Publish(context.Background(), e); err != nil {
			r.t.Fatal(err)
		}
	}
}

// waitCheckpoint polls until the stream's checkpoint is want.
func (r *rig) waitCheckpoint(stream string, want uint64, within time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		cp, err := r.rm.Checkpoint(context.Background(), customers.ByID, stream)
		if err != nil {
			r.t.Fatal(err)
		}
		if cp == want {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("checkpoint of %s is %d after %v, want %d (status %+v)", stream, cp, within, want, r.runner.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *rig) customer(key string) (customers.Customer, readmodel.Doc) {
	r.t.Helper()
	d, err := r.rm.Get(context.Background(), customers.ByID, key)
	if err != nil {
		r.t.Fatal(err)
	}
	var c customers.Customer
	if err := json.Unmarshal(d.Body, &c); err != nil {
		r.t.Fatal(err)
	}
	return c, d
}

// An event received twice is applied once, and one that arrives ahead of
// a missing one waits for it: the customer ends in class B (events in
// stream order: registered, A, B), not A (arrival order), with three
// document versions.
func TestDuplicatesOnceAndOutOfOrderWaits(t *testing.T) {
	r := newRig(t, time.Hour) // only the missing event's arrival can release the held one
	reg := &customers.CustomerRegistered{Name: "Ada"}
	a, b := &customers.CustomerClassificationUpdated{Class: "A"}, &customers.CustomerClassificationUpdated{Class: "B"}
	r.foreign("c-1", 1, reg)
	r.foreign("c-1", 3, b)
	r.foreign("c-1", 1, reg)
	r.waitCheckpoint("ext/analysis/c-1", 1, 10*time.Second)
	for deadline := time.Now().Add(10 * time.Second); r.runner.Status().Held != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("held %d with event 2 missing, want 1", r.runner.Status().Held)
		}
	}
	if cp, _ := r.rm.Checkpoint(context.Background(), customers.ByID, "ext/analysis/c-1"); cp != 1 {
		t.Fatalf("checkpoint %d while event 2 is missing, want 1 (event 3 applied out of order)", cp)
	}
	r.foreign("c-1", 3, b) // a duplicate of the held one
	r.foreign("c-1", 2, a)
	r.waitCheckpoint("ext/analysis/c-1", 3, 10*time.Second)
	r.foreign("c-1", 2, a)
	r.foreign("c-1", 4, &customers.CustomerClassificationUpdated{Class: "C"})
	r.waitCheckpoint("ext/analysis/c-1", 4, 10*time.Second)
	c, d := r.customer("c-1")
	if c.Class != "C" || c.Name != "Ada" || d.Version != 4 || d.Seq != 4 {
		t.Fatalf("customer %+v version %d seq %d, want class C, name Ada, version 4, seq 4", c, d.Version, d.Seq)
	}
	// The counters move just after the write the checkpoint shows.
	deadline := time.Now().Add(10 * time.Second)
	for st := r.runner.Status(); st.Applied != 4 || st.Duplicates != 3 || st.Held != 0 || st.Parked != 0; st = r.runner.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v, want 4 applied, 3 duplicates, none held or parked", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A gap that does not fill in time, in a stream the event store does not
// have, parks the held event with the reason; nothing is applied out of
// order.
func TestGapThatNeverFillsIsParked(t *testing.T) {
	r := newRig(t, 100*time.Millisecond)
	r.foreign("c-2", 1, &customers.CustomerRegistered{Name: "Bo"})
	r.foreign("c-2", 3, &customers.CustomerClassificationUpdated{Class: "B"})
	deadline := time.Now().Add(10 * time.Second)
	for r.runner.Status().Parked == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("nothing parked: %+v", r.runner.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	dls, err := r.tr.DeadLetters(context.Background(), 10)
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters %v %v, want 1", dls, err)
	}
	if dl := dls[0]; dl.Message.Sequence != 3 || !strings.Contains(dl.Reason, "events 2..2 did not arrive") || !strings.Contains(dl.Reason, "not in the event store") {
		t.Fatalf("dead letter seq %d reason %q", dl.Message.Sequence, dl.Reason)
	}
	c, _ := r.customer("c-2")
	if cp, _ := r.rm.Checkpoint(context.Background(), customers.ByID, "ext/analysis/c-2"); cp != 1 || c.Class != "" {
		t.Fatalf("checkpoint %d class %q, want 1 and no class", cp, c.Class)
	}
}

// A local stream: event 2 is internal only (never published) and is
// skipped at once; event 3 was published but is lost in flight, so event
// 4 waits GapWait and then event 3 is read from the event store.
func TestGapFilledFromEventStore(t *testing.T) {
	r := newRig(t, 200*time.Millisecond)
	pub := r.record("c-3", &customers.Registered{Name: "Cy", Email: "cy@example.com"}, &customers.NoteAdded{Text: "vip"},
		&customers.Classified{Class: "A", Score: 90}, &customers.Classified{Class: "B", Score: 60})
	if _, published := pub[2]; published || len(pub) != 3 {
		t.Fatalf("published %d events, want 3 (the note is internal)", len(pub))
	}
	stream := "agg/" + customers.AggregateName + "/c-3"
	start := time.Now()
	r.publish(pub[1], pub[4])
	r.waitCheckpoint(stream, 4, 10*time.Second)
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Fatalf("event 4 applied after %v, before GapWait: event 3 was not waited for", waited)
	}
	c, d := r.customer("c-3")
	if c.Class != "B" || d.Version != 3 {
		t.Fatalf("customer %+v version %d, want class B after A (version 3)", c, d.Version)
	}
	// Event 3 arriving late now is a duplicate.
	r.publish(pub[3])
	deadline := time.Now().Add(10 * time.Second)
	for r.runner.Status().Duplicates == 0 {
		if time.Now().After(deadline) {
			t.Fatal("late event 3 not seen")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if c, _ := r.customer("c-3"); c.Class != "B" {
		t.Fatalf("late duplicate changed the class to %q", c.Class)
	}
}

// An event after an unpublished one is applied without waiting: the
// event store shows the missing event will never be delivered.
func TestUnpublishedEventIsSkippedAtOnce(t *testing.T) {
	r := newRig(t, time.Hour)
	pub := r.record("c-4", &customers.Registered{Name: "Di"}, &customers.NoteAdded{Text: "x"}, &customers.Classified{Class: "C"})
	r.publish(pub[1], pub[3])
	r.waitCheckpoint("agg/"+customers.AggregateName+"/c-4", 3, 10*time.Second)
	if c, _ := r.customer("c-4"); c.Class != "C" {
		t.Fatalf("class %q, want C", c.Class)
	}
}

// Rebuild replays the event store and gives the read model the live run
// gave, with progress per stream.
func TestRebuildMatchesLive(t *testing.T) {
	r := newRig(t, 200*time.Millisecond)
	var all []message.Envelope
	for i, id := range []string{"r-1", "r-2", "r-3"} {
		pub := r.record(id, &customers.Registered{Name: id}, &customers.Classified{Class: []string{"A", "B", "C"}[i]}, &customers.NoteAdded{Text: "n"}, &customers.Classified{Class: "B"})
		for seq := uint64(1); seq <= 4; seq++ {
			if e, ok := pub[seq]; ok {
				all = append(all, e)
			}
		}
	}
	r.publish(all...)
	for _, id := range []string{"r-1", "r-2", "r-3"} {
		r.waitCheckpoint("agg/"+customers.AggregateName+"/"+id, 4, 10*time.Second)
	}
	live := docs(t, r.rm, customers.ByID)
	var calls [][2]int
	if err := r.runner.Rebuild(context.Background(), func(done, total int) { calls = append(calls, [2]int{done, total}) }); err != nil {
		t.Fatal(err)
	}
	rebuilt := docs(t, r.rm, customers.ByID)
	if len(live) != 3 || !equalDocs(live, rebuilt) {
		t.Fatalf("rebuilt read model differs from the live one:\nlive    %v\nrebuilt %v", live, rebuilt)
	}
	if len(calls) != 4 || calls[0] != [2]int{0, 3} || calls[3] != [2]int{3, 3} {
		t.Fatalf("progress calls %v, want 0/3 .. 3/3", calls)
	}
	if st := r.runner.Status(); st.Rebuild == nil || st.Rebuild.Running || st.Rebuild.Done != 3 || st.Rebuild.Events != 12 {
		t.Fatalf("rebuild status %+v", st.Rebuild)
	}
}

// docs returns key -> (body, version) of a model.
func docs(t *testing.T, rm readmodel.Store, model string) map[string]string {
	t.Helper()
	list, err := rm.List(context.Background(), model, "", readmodel.MaxListLimit)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(list))
	for _, d := range list {
		out[d.Key] = string(d.Body) + " v" + itoa(d.Version) + " " + d.Stream + "#" + itoa(d.Seq)
	}
	return out
}

func equalDocs(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A second rebuild while one runs is refused with ErrRebuilding.
func TestRebuildRunsAlone(t *testing.T) {
	r := newRig(t, time.Second)
	r.record("x-1", &customers.Registered{Name: "x"})
	inside, release := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- r.runner.Rebuild(context.Background(), func(done, total int) {
			if done == 0 {
				close(inside)
				<-release
			}
		})
	}()
	<-inside
	if err := r.runner.Rebuild(context.Background(), nil); !errors.Is(err, projection.ErrRebuilding) {
		t.Fatalf("second rebuild: %v, want ErrRebuilding", err)
	}
	if st := r.runner.Status(); st.State != "rebuilding" || st.Rebuild == nil || !st.Rebuild.Running || st.Rebuild.Total != 1 {
		t.Fatalf("status during rebuild %+v", st)
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if c, _ := r.customer("x-1"); c.Name != "x" {
		t.Fatalf("rebuilt customer %+v", c)
	}
}

func TestDefinitionProblems(t *testing.T) {
	p := projection.New("")
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "empty projection name") || !strings.Contains(err.Error(), "handles no event") {
		t.Fatalf("validate: %v", err)
	}
	q := projection.New("twice")
	h := func(context.Context, readmodel.Tx, *customers.CustomerRegistered, projection.Meta) error { return nil }
	projection.On(q, h)
	projection.On(q, h)
	if err := q.Validate(); err == nil || !strings.Contains(err.Error(), "handled twice") {
		t.Fatalf("validate: %v", err)
	}
}
