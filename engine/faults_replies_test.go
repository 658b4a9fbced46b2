package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/actors"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/workflows"
)

// Issue 11 item 19: late and repeated replies, replies and events for no
// saga, and racing starts of one saga ID.

// replyProbe is a transport that holds the deliveries hold picks until
// release is closed (without blocking the partition: the handler is
// called later, from a goroutine that ends with the consumer's context)
// and counts the acks of every message ID.
type replyProbe struct {
	transport.Transport
	hold     func(message.Envelope) bool
	held     chan string // IDs of held deliveries
	release  chan struct{}
	stopHold sync.Once

	mu   sync.Mutex
	acks map[string]int
}

func newReplyProbe(tr transport.Transport, hold func(message.Envelope) bool) *replyProbe {
	return &replyProbe{Transport: tr, hold: hold, held: make(chan string, 16), release: make(chan struct{}), acks: map[string]int{}}
}

func (p *replyProbe) releaseHeld() { p.stopHold.Do(func() { close(p.release) }) }

func (p *replyProbe) ackCount(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acks[id]
}

func (p *replyProbe) Consume(ctx context.Context, queue string, prefetch int, h transport.Handler) error {
	return p.Transport.Consume(ctx, queue, prefetch, func(ctx context.Context, d transport.Delivery) {
		d = &probedDelivery{Delivery: d, p: p}
		if !p.hold(d.Envelope()) {
			h(ctx, d)
			return
		}
		select {
		case p.held <- d.Envelope().ID:
		default:
		}
		go func() {
			select {
			case <-p.release:
				h(ctx, d)
			case <-ctx.Done():
			}
		}()
	})
}

type probedDelivery struct {
	transport.Delivery
	p *replyProbe
}

func (d *probedDelivery) Ack(ctx context.Context) error {
	d.p.mu.Lock()
	d.p.acks[d.Envelope().ID]++
	d.p.mu.Unlock()
	return d.Delivery.Ack(ctx)
}

// sagaCommits returns the commits of saga id's stream.
func sagaCommits(t *testing.T, st store.Store, id string) []store.Commit {
	t.Helper()
	commits, err := st.Load(context.Background(), actors.SagaStream(id), 1)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("load saga %s: %v", id, err)
	}
	return commits
}

// recordID returns the message ID of the nth (from 0) record of event for
// step in h.
func recordID(t *testing.T, h []workflows.Record, event, step string, nth int) string {
	t.Helper()
	for _, r := range h {
		if r.Event == event && r.Step == step {
			if nth == 0 {
				return r.MessageID
			}
			nth--
		}
	}
	t.Fatalf("no record %d of %s for step %s in %+v", nth, event, step, h)
	return ""
}

// replyTo returns the reply a participant recorded in its aggregate's
// outbox for command cmdID.
func replyTo(t *testing.T, st store.Store, aggType, id, cmdID string) message.Envelope {
	t.Helper()
	commits, err := st.Load(context.Background(), actors.AggregateStream(aggType, id), 1)
	if err != nil {
		t.Fatalf("load %s/%s: %v", aggType, id, err)
	}
	for _, c := range commits {
		for _, m := range c.Outbox {
			if m.Kind == message.KindReply && m.CausationID == cmdID {
				return m
			}
		}
	}
	t.Fatalf("%s/%s recorded no reply to %s", aggType, id, cmdID)
	return message.Envelope{}
}

// waitDeadLetter waits until a dead letter matches and returns its reason.
func waitDeadLetter(t *testing.T, e *engine.Engine, what string, match func(transport.DeadLetter) bool) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		dls, err := e.DeadLetters(context.Background(), engine.DeadLetterFilter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, dl := range dls {
			if match(dl) {
				return dl.Reason
			}
		}
		if time.Now().After(deadline) {
			var seen []string
			for _, dl := range dls {
				seen = append(seen, dl.Message.ID+" ("+dl.Message.Type+"): "+dl.Reason)
			}
			t.Fatalf("%s: not dead-lettered within 20s; dead letters: %s", what, strings.Join(seen, "; "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLateRepeatedAndStrayRepliesAreParkedNeverApplied(t *testing.T) {
	forEachStore(t, testLateRepeatedAndStrayReplies)
}

func testLateRepeatedAndStrayReplies(t *testing.T, ts testStore) {
	const id = "o-late"
	opts := ts.options(t)
	tr := inmem.New(inmem.WithPartitions(16), inmem.WithLogger(quietLogger()))
	t.Cleanup(func() { _ = tr.Close() })
	// The last compensation (release the stock) is held, so the saga
	// stays compensating while the late replies arrive.
	probe := newReplyProbe(tr, func(m message.Envelope) bool { return m.Type == "inventory.ReleaseStock.v1" && m.Key == id })
	opts.Transport = probe
	e := kindsEngine(t, opts, orders.WorkflowWithTimeout(fastRetry, longTimeout), engine.Message[stockArrived](typeStockArrived), eventWorkflow())
	runEngine(t, e)
	t.Cleanup(probe.releaseHeld) // before the engine stops
	ctx := context.Background()
	st := e.Store()

	raw, _ := json.Marshal(orders.Input{OrderID: id, SKU: "lamp", Qty: 1, Amount: 20, Address: orders.Unreachable})
	if _, err := e.Start(ctx, engine.StartRequest{Workflow: orders.WorkflowName, ID: id, CorrelationID: id, Input: raw}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-probe.held:
	case <-time.After(20 * time.Second):
		s, _ := e.GetSaga(ctx, id)
		t.Fatalf("the release of the stock was never sent; saga %s at %q", s.Status, s.Step)
	}
	before, err := e.GetSaga(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if before.Status != workflows.StatusCompensating {
		t.Fatalf("saga %s, want compensating while the release is held", before.Status)
	}
	commitsBefore := len(sagaCommits(t, st, id))
	h := before.History
	chargeCmd := recordID(t, h, workflows.EventStepStarted, "charge-payment", 0)
	refundCmd := recordID(t, h, workflows.EventCompensationStarted, "charge-payment", 0)
	shipFirst := recordID(t, h, workflows.EventStepStarted, "ship-order", 0)
	shipLast := recordID(t, h, workflows.EventStepStarted, "ship-order", 2)
	chargeReply := replyTo(t, st, "payments.Payment", id, chargeCmd)
	refundReply := replyTo(t, st, "payments.Payment", id, refundCmd)

	// again is a copy of m under a new ID: the participant answered twice,
	// or a reply was re-sent by hand.
	again := func(m message.Envelope) message.Envelope {
		m = m.Clone()
		m.ID = message.NewID()
		return m
	}
	reply := func(cmdID string, body any) message.Envelope {
		m, err := e.Registry().New(message.KindReply, id, body)
		if err != nil {
			t.Fatal(err)
		}
		m.Destination, m.Source, m.SagaID, m.CorrelationID, m.CausationID, m.OccurredAt = "sagaflow", "test", id, id, cmdID, time.Now()
		return m
	}
	publish := func(ms ...message.Envelope) {
		t.Helper()
		for _, m := range ms {
			if err := tr.Publish(ctx, m); err != nil {
				t.Fatalf("publish %s: %v", m.ID, err)
			}
		}
	}
	parked := []struct {
		what string
		m    message.Envelope
		says string
	}{
		{"the charge's reply again under a new ID", again(chargeReply), "not awaited by the saga"},
		{"the refund's reply again under a new ID", again(refundReply), "not awaited by the saga"},
		{"a late failure of the first shipping attempt", reply(shipFirst, &message.Failure{Reason: "late", Retryable: true}), "not awaited by the saga"},
		{"a late success of the failed shipping step", reply(shipLast, &orders.OrderShipped{OrderID: id, TrackingNo: "trk-late"}), "not awaited by the saga"},
	}
	// While compensating: exact redeliveries of replies applied before
	// are recognised and acked; the rest are parked with the reason.
	publish(chargeReply, refundReply)
	for _, p := range parked {
		publish(p.m)
	}
	for _, p := range parked {
		reason := waitDeadLetter(t, e, p.what, func(dl transport.DeadLetter) bool { return dl.Message.ID == p.m.ID })
		if !strings.Contains(reason, p.says) || !strings.Contains(reason, p.m.CausationID) || !strings.Contains(reason, id) {
			t.Errorf("%s: dead-letter reason %q, want it to say %q and name the saga and the command %s", p.what, reason, p.says, p.m.CausationID)
		}
	}
	for _, m := range []message.Envelope{chargeReply, refundReply} {
		waitUntil(t, 20*time.Second, "the redelivered reply "+m.ID+" acked", func() bool { return probe.ackCount(m.ID) >= 2 })
	}
	after, err := e.GetSaga(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(sagaCommits(t, st, id)); n != commitsBefore || after.Status != before.Status || !reflect.DeepEqual(after.History, before.History) || string(after.State) != string(before.State) {
		t.Fatalf("late replies changed the saga: %d commits (was %d), status %s, state %s (was %s), history %+v",
			n, commitsBefore, after.Status, after.State, before.State, after.History)
	}

	// The held compensation goes on; the saga ends compensated, each step
	// and compensation recorded once.
	probe.releaseHeld()
	s := waitSaga(t, e, id)
	if s.Status != workflows.StatusCompensated {
		t.Fatalf("status %s (%s), want compensated", s.Status, s.Error)
	}
	for _, c := range []struct {
		event, step string
		n           int
	}{
		{workflows.EventStepSucceeded, "reserve-stock", 1}, {workflows.EventStepSucceeded, "charge-payment", 1},
		{workflows.EventStepSucceeded, "ship-order", 0}, {workflows.EventStepFailed, "ship-order", 1},
		{workflows.EventCompensationSucceeded, "charge-payment", 1}, {workflows.EventCompensationSucceeded, "reserve-stock", 1},
		{workflows.EventCompensated, "", 1},
	} {
		if got := countEvents(s.History, c.event, c.step); got != c.n {
			t.Errorf("%d %s records of %q, want %d; history %+v", got, c.event, c.step, c.n, s.History)
		}
	}
	var state orders.State
	if err := json.Unmarshal(s.State, &state); err != nil || state.TrackingNo != "" {
		t.Errorf("state %s (%v): the late shipping success was applied", s.State, err)
	}

	// After the end: a late reply to the last compensation is parked as
	// for a finished saga, its exact redelivery acked; nothing changes.
	releaseCmd := recordID(t, s.History, workflows.EventCompensationStarted, "reserve-stock", 0)
	releaseReply := replyTo(t, st, "inventory.Reservation", id, releaseCmd)
	commitsEnd := len(sagaCommits(t, st, id))
	late := again(releaseReply)
	publish(late, releaseReply)
	if reason := waitDeadLetter(t, e, "a late reply to a finished saga", func(dl transport.DeadLetter) bool { return dl.Message.ID == late.ID }); !strings.Contains(reason, "saga already finished") {
		t.Errorf("late reply to a finished saga: reason %q, want it to say the saga already finished", reason)
	}
	waitUntil(t, 20*time.Second, "the redelivered release reply acked", func() bool { return probe.ackCount(releaseReply.ID) >= 2 })
	if end, _ := e.GetSaga(ctx, id); len(sagaCommits(t, st, id)) != commitsEnd || !reflect.DeepEqual(end.History, s.History) {
		t.Errorf("a reply to the finished saga changed it: history %+v", end.History)
	}
	checkEffects(t, st, id, shippingFailedEffects)

	// A reply and events that concern no saga: parked with the reason, no
	// saga created.
	listed := func() int {
		sagas, _, err := e.ListSagas(ctx, engine.ListRequest{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return len(sagas)
	}
	sagasBefore := listed()
	ghostReply := reply(message.NewID(), &orders.PaymentCharged{OrderID: "x", ChargeID: "ch-x"})
	ghostReply.Key, ghostReply.SagaID, ghostReply.CorrelationID = "ghost-reply", "ghost-reply", "ghost-reply"
	event := func(sagaID, corr string) message.Envelope {
		ev, err := e.Registry().New(message.KindEvent, "warehouse-1", &stockArrived{SKU: "lamp", Qty: 1})
		if err != nil {
			t.Fatal(err)
		}
		ev.Source, ev.SagaID, ev.CorrelationID, ev.OccurredAt = "warehouse", sagaID, corr, time.Now()
		return ev
	}
	bySagaID, byCorrelation := event("ghost-event", ""), event("", "ghost-correlation")
	publish(ghostReply, bySagaID, byCorrelation)
	for _, c := range []struct {
		what  string
		match func(transport.DeadLetter) bool
		says  []string
	}{
		{"a reply for no saga", func(dl transport.DeadLetter) bool { return dl.Message.ID == ghostReply.ID }, []string{"ghost-reply", "not found"}},
		// An event naming its saga is routed to it as a command caused
		// by the event; that saga does not exist, so it is parked.
		{"an event naming no saga", func(dl transport.DeadLetter) bool { return dl.Message.CausationID == bySagaID.ID }, []string{"ghost-event", "not found"}},
		{"an event of no saga's correlation", func(dl transport.DeadLetter) bool { return dl.Message.ID == byCorrelation.ID }, []string{"no saga", "ghost-correlation"}},
	} {
		reason := waitDeadLetter(t, e, c.what, c.match)
		for _, w := range c.says {
			if !strings.Contains(reason, w) {
				t.Errorf("%s: dead-letter reason %q does not say %q", c.what, reason, w)
			}
		}
	}
	if n := listed(); n != sagasBefore {
		t.Errorf("%d sagas after the stray messages, %d before: a phantom saga was created", n, sagasBefore)
	}
	for _, ghost := range []string{"ghost-reply", "ghost-event", "ghost-correlation", "warehouse-1"} {
		if c := sagaCommits(t, st, ghost); len(c) != 0 {
			t.Errorf("the store holds %d commits of saga %s", len(c), ghost)
		}
		if _, err := e.GetSaga(ctx, ghost); !errors.Is(err, engine.ErrSagaNotFound) {
			t.Errorf("GetSaga(%s) = %v, want ErrSagaNotFound", ghost, err)
		}
	}
}

func TestRacingStartsOfOneSagaIDCreateOneSaga(t *testing.T) {
	forEachStore(t, testRacingStarts)
}

// testRacingStarts starts 20 sagas, each from 20 goroutines at once:
// half by ID, half by idempotency key; half of the goroutines through the
// admin API, half through Engine.Start; and on two engines that share the
// store (two nodes, in the topology of item 10), so that only the store's
// one-commit-per-version rule can keep a start from creating a second
// saga.
func testRacingStarts(t *testing.T, ts testStore) {
	const ids, racers = 20, 20
	inner := ts.open(t)
	tn := &twoNodes{}
	for i := range tn.nodes {
		tn.nodes[i] = inmem.New(inmem.WithPartitions(4), inmem.WithLogger(quietLogger()))
		t.Cleanup(func() { _ = tn.nodes[i].Close() })
	}
	var engines [2]*engine.Engine
	for i := range engines {
		engines[i] = newFaultEngine(t, engine.Options{Store: inner, Transport: tn.node(i), Partitions: 4, RelayInterval: 200 * time.Millisecond})
	}
	e := engines[0]
	ctx := context.Background()
	type outcome struct {
		id      string
		created bool
		err     error
	}
	results := make(chan outcome, ids*racers)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for r := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			for i := range ids {
				i = (i + r) % ids // racers start the IDs in different orders
				order := fmt.Sprintf("o-race-%02d", i)
				raw, _ := json.Marshal(orders.Input{OrderID: order, SKU: "sku", Qty: 1, Amount: 10, Address: "street"})
				req := engine.StartRequest{Workflow: orders.WorkflowName, Input: raw, CorrelationID: order}
				if i%2 == 0 {
					req.ID = order
				} else {
					req.IdempotencyKey = order
				}
				var o outcome
				node := engines[r%2]
				if r/2%2 == 0 {
					resp, err := node.Start(ctx, req)
					o = outcome{resp.ID, resp.Created, err}
				} else {
					o = startOverHTTP(node, req)
				}
				results <- o
			}
		}()
	}
	close(gate)
	wg.Wait()
	close(results)
	created := map[string]int{}
	answered := map[string]int{}
	for o := range results {
		if o.err != nil {
			t.Errorf("start: %v", o.err)
			continue
		}
		answered[o.id]++
		if o.created {
			created[o.id]++
		}
	}
	if len(answered) != ids {
		t.Fatalf("starts answered %d saga IDs, want %d: %v", len(answered), ids, answered)
	}
	for id, n := range answered {
		if n != racers || created[id] != 1 {
			t.Errorf("saga %s: %d answers, %d of them created, want %d answers and exactly 1 created", id, n, created[id], racers)
		}
	}
	sagas, _, err := e.ListSagas(ctx, engine.ListRequest{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(sagas) != ids {
		t.Errorf("%d sagas listed, want %d", len(sagas), ids)
	}
	for id := range answered {
		s := waitSaga(t, e, id)
		if s.Status != workflows.StatusCompleted {
			t.Errorf("saga %s: %s (%s), want completed", id, s.Status, s.Error)
		}
		if n := countEvents(s.History, workflows.EventStarted, ""); n != 1 {
			t.Errorf("saga %s: %d start records, want 1", id, n)
		}
		for _, step := range []string{"reserve-stock", "charge-payment", "ship-order"} {
			if got, want := stepEvents(s, step), []string{workflows.EventStepStarted, workflows.EventStepSucceeded}; !equalStrings(got, want) {
				t.Errorf("saga %s step %s: %v, want %v", id, step, got, want)
			}
		}
		var in orders.Input
		if err := json.Unmarshal(s.State, &in); err != nil {
			t.Fatal(err)
		}
		checkEffects(t, inner, in.OrderID, completedEffects)
	}
	for i, n := range tn.nodes {
		if dls, _ := n.DeadLetters(ctx, 10); len(dls) != 0 {
			t.Errorf("node %d dead letters: %+v", i, dls)
		}
	}
}

// startOverHTTP starts through POST /v1/sagas (the idempotency key as the
// header); 201 is created, 200 existed.
func startOverHTTP(e *engine.Engine, req engine.StartRequest) (o struct {
	id      string
	created bool
	err     error
}) {
	key := req.IdempotencyKey
	req.IdempotencyKey = ""
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequest(http.MethodPost, e.AdminURL()+"/v1/sagas", strings.NewReader(string(body)))
	if err != nil {
		o.err = err
		return o
	}
	if key != "" {
		hreq.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		o.err = err
		return o
	}
	defer resp.Body.Close()
	var sr engine.StartResponse
	if err := json.NewDecoder(resp.Body).Decode(&sr); err != nil || (resp.StatusCode != 201 && resp.StatusCode != 200) {
		o.err = fmt.Errorf("POST /v1/sagas: %d (%v)", resp.StatusCode, err)
		return o
	}
	o.id, o.created = sr.ID, resp.StatusCode == 201
	return o
}
