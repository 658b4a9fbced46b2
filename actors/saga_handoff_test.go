package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/workflows"
)

func TestHandoffTakesOnceAndForgetsTheOldestAndTheAged(t *testing.T) {
	var h sagaHandoff
	t0 := time.Unix(1_700_000_000, 0)
	snapOf := func(id string) SagaSnapshot { return SagaSnapshot{Instance: workflows.Instance{ID: id}, Version: 1} }

	h.put(snapOf("a"), "state of a", nil, t0)
	snap, state, _, ok := h.take("a", t0.Add(time.Second))
	if !ok || snap.Instance.ID != "a" || state != "state of a" {
		t.Fatalf("take a = %+v, %v, %v; want a's snapshot and state", snap.Instance, state, ok)
	}
	if _, _, _, ok := h.take("a", t0); ok {
		t.Error("a was taken twice")
	}

	h.put(snapOf("old"), nil, nil, t0)
	if _, _, _, ok := h.take("old", t0.Add(handoffMaxAge+time.Millisecond)); ok {
		t.Errorf("a saga handed over %v ago was taken; the limit is %v", handoffMaxAge+time.Millisecond, handoffMaxAge)
	}
	if n := h.len(); n != 0 {
		t.Errorf("%d sagas held after the aged one was asked for, want 0", n)
	}

	for i := range handoffCapacity + 10 {
		h.put(snapOf(fmt.Sprint(i)), nil, nil, t0)
	}
	if n := h.len(); n != handoffCapacity {
		t.Errorf("%d sagas held after %d puts, want the capacity %d", n, handoffCapacity+10, handoffCapacity)
	}
	for _, id := range []string{"0", "9"} {
		if _, _, _, ok := h.take(id, t0); ok {
			t.Errorf("saga %s, among the 10 oldest, is still held", id)
		}
	}
	if _, _, _, ok := h.take("10", t0); !ok {
		t.Error("saga 10, the oldest that fits, is gone")
	}
}

// handoffRig is two engines' Deps over one embedded store and one
// in-process transport, with two workflows: wf has two command steps,
// local a local step and then a command step.
type handoffRig struct {
	loads      atomic.Int64 // Load calls of both
	deps, peer *Deps
	wf, local  workflows.Workflow
	sagas, svc <-chan message.Envelope // what reaches the saga queue and the participant
}

type handoffInput struct {
	N int `json:"n"`
}

type handoffDo struct {
	N int `json:"n"`
}

type handoffDone struct {
	N int `json:"n"`
}

// countingStore counts Loads.
type countingStore struct {
	store.Store
	loads *atomic.Int64
}

func (s countingStore) Load(ctx context.Context, stream string, from uint64) ([]store.Commit, error) {
	s.loads.Add(1)
	return s.Store.Load(ctx, stream, from)
}

func newHandoffRig(t *testing.T) *handoffRig {
	t.Helper()
	ctx := t.Context()
	st, tr := openRigParts(t)
	reg := message.NewRegistry(message.JSON{})
	if err := errors.Join(RegisterMessages(reg),
		message.Register[handoffDo](reg, "test.HandoffDo.v1"),
		message.Register[handoffDone](reg, "test.HandoffDone.v1")); err != nil {
		t.Fatal(err)
	}
	do := workflows.CommandStep[handoffInput]{
		Service: "svc", Timeout: time.Hour,
		Command: func(s *handoffInput) (workflows.Cmd, error) {
			if s.N < 0 {
				panic("the command builder fails on a negative n")
			}
			return workflows.Cmd{Key: fmt.Sprint(s.N), Body: handoffDo(*s)}, nil
		},
	}
	init := func(in handoffInput) (handoffInput, error) { return in, nil }
	wf := workflows.New("test.Handoff", 1, init).Send("do", do).Send("do-again", do)
	local := workflows.New("test.HandoffLocal", 1, init).
		Do("count", workflows.LocalStep[handoffInput]{Run: func(_ context.Context, s *handoffInput) error { s.N++; return nil }}).
		Send("do", do)
	r := &handoffRig{wf: wf, local: local}
	queues := map[string]chan message.Envelope{"sagas": make(chan message.Envelope, 8), "svc": make(chan message.Envelope, 8)}
	for name, ch := range queues {
		if err := tr.Declare(ctx, transport.Queue{Name: name}); err != nil {
			t.Fatal(err)
		}
		go func() {
			_ = tr.Consume(ctx, name, 8, func(ctx context.Context, d transport.Delivery) {
				ch <- d.Envelope()
				_ = d.Ack(ctx)
			})
		}()
	}
	r.sagas, r.svc = queues["sagas"], queues["svc"]
	newDeps := func() *Deps {
		return &Deps{
			Store: countingStore{st, &r.loads}, Transport: tr, Registry: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			SagaQueue: "sagas", Source: "test",
			Workflows: func(name string, version int) (workflows.Workflow, bool) {
				for _, w := range []workflows.Workflow{wf, local} {
					if name == w.Name() && version == w.Version() {
						return w, true
					}
				}
				return nil, false
			},
		}
	}
	r.deps, r.peer = newDeps(), newDeps()
	return r
}

// next returns the next message on ch.
func next(t *testing.T, ch <-chan message.Envelope, what string) message.Envelope {
	t.Helper()
	select {
	case env := <-ch:
		return env
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
		return message.Envelope{}
	}
}

// handle has a fresh actor of saga id on deps handle env, and returns how
// the delivery was settled.
func handle(t *testing.T, deps *Deps, id string, env message.Envelope) (string, error) {
	t.Helper()
	d := &fakeDelivery{env: env, done: make(chan struct{})}
	(&sagaEntity{deps: deps, id: id}).handle(t.Context(), d)
	return d.wait(t)
}

// reply is the participant's answer to cmd, for saga id.
func (r *handoffRig) reply(t *testing.T, id string, cmd message.Envelope) message.Envelope {
	t.Helper()
	reply, err := r.deps.Registry.New(message.KindReply, id, &handoffDone{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	reply.CausationID, reply.SagaID, reply.Destination = cmd.ID, id, "sagas"
	return reply
}

// sagaAt checks saga id's status and version in the store.
func (r *handoffRig) sagaAt(t *testing.T, id string, status workflows.Status, version uint64) SagaSnapshot {
	t.Helper()
	snap, err := LoadSaga(t.Context(), r.deps, id)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Instance.Status != status || snap.Version != version {
		t.Fatalf("saga %s is %s at v%d, want %s at v%d", id, snap.Instance.Status, snap.Version, status, version)
	}
	return snap
}

func TestStartTakesAFirstCommandStepAndHandsTheSagaToItsActor(t *testing.T) {
	r := newHandoffRig(t)
	if err := StartSaga(t.Context(), r.deps, r.wf, "s1", "", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	cmd := next(t, r.svc, "first step's command")
	snap := r.sagaAt(t, "s1", workflows.StatusRunning, 1)
	if snap.Instance.Pending == nil || snap.Instance.Pending.ID != cmd.ID {
		t.Fatalf("v1 awaits %v, want the command %s it sent", snap.Instance.Pending, cmd.ID)
	}
	select {
	case env := <-r.sagas:
		t.Fatalf("the saga queue got %s; a saga whose first step is a command needs no resume", env.Type)
	case <-time.After(50 * time.Millisecond):
	}
	r.loads.Store(0)
	if how, err := handle(t, r.deps, "s1", r.reply(t, "s1", cmd)); how != "ack" {
		t.Fatalf("reply settled %s (%v), want ack", how, err)
	}
	if n := r.loads.Load(); n != 0 {
		t.Errorf("the saga's actor read the store %d times, want 0 (its first version was handed over)", n)
	}
	if n := r.deps.handoff.len(); n != 0 {
		t.Errorf("%d sagas still held after the actor started, want 0", n)
	}
	second := next(t, r.svc, "second step's command")
	if snap := r.sagaAt(t, "s1", workflows.StatusRunning, 2); snap.Instance.Pending == nil || snap.Instance.Pending.ID != second.ID {
		t.Errorf("v2 awaits %v, want the second command %s", snap.Instance.Pending, second.ID)
	}
}

func TestStartLeavesAFirstLocalStepToTheSagasActor(t *testing.T) {
	r := newHandoffRig(t)
	if err := StartSaga(t.Context(), r.deps, r.local, "l1", "", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	resume := next(t, r.sagas, "resume")
	if resume.Type != workflows.TypeResume {
		t.Fatalf("the saga queue got %s, want %s", resume.Type, workflows.TypeResume)
	}
	if snap := r.sagaAt(t, "l1", workflows.StatusRunning, 1); snap.Instance.Step != 0 || len(snap.History) != 1 {
		t.Fatalf("v1 is at step %d with records %+v; want the local step not run yet", snap.Instance.Step, snap.History)
	}
	if how, err := handle(t, r.deps, "l1", resume); how != "ack" {
		t.Fatalf("resume settled %s (%v), want ack", how, err)
	}
	cmd := next(t, r.svc, "command after the local step")
	if string(cmd.Payload) != `{"n":2}` {
		t.Errorf("command payload %s, want {\"n\":2} (the local step ran in the actor, once)", cmd.Payload)
	}
	r.sagaAt(t, "l1", workflows.StatusRunning, 2)
}

// TestStartFailsAFirstStepWhoseCommandBuilderPanics: a panic in the
// workflow's command builder fails the step in the machine, at the start
// as in the saga's actor: v1 records the failure and the compensation,
// sends no command and no resume, and is the saga's final version.
func TestStartFailsAFirstStepWhoseCommandBuilderPanics(t *testing.T) {
	r := newHandoffRig(t)
	if err := StartSaga(t.Context(), r.deps, r.wf, "p1", "", []byte(`{"n":-1}`)); err != nil {
		t.Fatalf("start with a panicking command builder: %v, want the saga created", err)
	}
	snap := r.sagaAt(t, "p1", workflows.StatusCompensated, 1)
	var failed *workflows.Record
	for i := range snap.History {
		if snap.History[i].Event == workflows.EventStepFailed {
			failed = &snap.History[i]
		}
	}
	if failed == nil || failed.Step != "do" || !strings.Contains(failed.Detail, "panic") {
		t.Fatalf("v1 records %+v, want step do failed with the builder's panic", snap.History)
	}
	select {
	case env := <-r.svc:
		t.Fatalf("the participant got %s from a step whose command could not be built", env.Type)
	case env := <-r.sagas:
		t.Fatalf("the saga queue got %s; a finished saga needs no resume", env.Type)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestStaleHandoffIsCheckedAgainstTheStore(t *testing.T) {
	r := newHandoffRig(t)
	if err := StartSaga(t.Context(), r.deps, r.wf, "s1", "", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	// Another engine takes the first reply: the saga moves on to v2 there,
	// while this engine still holds v1.
	first := next(t, r.svc, "first step's command")
	if how, err := handle(t, r.peer, "s1", r.reply(t, "s1", first)); how != "ack" {
		t.Fatalf("first reply on the peer settled %s (%v), want ack", how, err)
	}
	second := next(t, r.svc, "second step's command")

	// The second reply reaches this engine's actor, which starts from the
	// stale v1 (awaiting the first command there): it must read the
	// store, not refuse the reply as not awaited.
	if how, err := handle(t, r.deps, "s1", r.reply(t, "s1", second)); how != "ack" {
		t.Fatalf("second reply settled %s (%v), want ack", how, err)
	}
	r.sagaAt(t, "s1", workflows.StatusCompleted, 3)
}
