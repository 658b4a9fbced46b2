package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	bolt "go.etcd.io/bbolt"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sagaflow/sagaflow/actors"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/shred"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
	mongostore "github.com/sagaflow/sagaflow/store/mongo"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/workflows"
)

// Golden fixtures (issue 11, item 20): the stored state of a deterministic
// scenario, written by an earlier version of the code and committed under
// testdata/golden/<version>/; every later version must load it and carry
// its sagas on. See testdata/golden/README.md.

var updateGolden = flag.Bool("update-golden", false, "write the golden fixtures of the current stored formats (testdata/golden/<version>/<backend>) that are not committed yet, then check them all")

// goldenVersions are the fixture sets the generator writes, by backend:
// each backend's stored format has its own set. Older sets stay as they
// are: a new stored format gets a new directory, and the generator never
// writes over a set that exists.
var goldenVersions = map[string]string{"embedded": "v2", "mongo": "v1"}

const (
	goldenOrderWorkflow    = "golden.Order"
	goldenReminderWorkflow = "golden.Reminder"
	goldenAccount          = "acc-golden"
	goldenCustomer         = "cust-golden"
	// goldenWait is the durable timers' length at generation: the reply
	// timeout of the in-flight saga's step and the reminder's delay. The
	// generator stops its engines well within it; when the test runs, the
	// timers are long past due and fire at once.
	goldenWait = 20 * time.Second
	// goldenReplyTimeout is the reply timeout of reserve-stock: long past
	// any test run, so that the in-flight saga, whose command is still in
	// the fixture's outbox, gets its reply from the relayed command rather
	// than from a resend after a timeout (which would reserve twice).
	goldenReplyTimeout = 10 * 365 * 24 * time.Hour
)

// The sagas of the scenario, by ID, with the status they end in once an
// engine has carried them on from the fixture.
var goldenSagas = []struct {
	id, workflow string
	input        orders.Input
	atFixture    workflows.Status
	final        workflows.Status
}{
	{"golden-completed", goldenOrderWorkflow, orders.Input{OrderID: "g-1", SKU: "sku-1", Qty: 1, Amount: 10, Address: "1 Main St"}, workflows.StatusCompleted, workflows.StatusCompleted},
	{"golden-compensated", goldenOrderWorkflow, orders.Input{OrderID: "g-2", SKU: "sku-2", Qty: 2, Amount: orders.MaxAmount + 1, Address: "2 Main St"}, workflows.StatusCompensated, workflows.StatusCompensated},
	{"golden-timer", goldenReminderWorkflow, orders.Input{OrderID: "g-3", SKU: "sku-3", Qty: 3, Amount: 30, Address: "3 Main St"}, workflows.StatusRunning, workflows.StatusCompleted},
	{"golden-inflight", goldenOrderWorkflow, orders.Input{OrderID: "g-4", SKU: "sku-4", Qty: 4, Amount: 40, Address: "4 Main St"}, workflows.StatusRunning, workflows.StatusCompleted},
}

// goldenOrder is the order saga of the fixtures: the demo's steps.
func goldenOrder() *workflows.Definition[orders.Input, orders.State] {
	return workflows.New(goldenOrderWorkflow, 1, func(in orders.Input) (orders.State, error) {
		if in.OrderID == "" {
			return orders.State{}, errors.New("order_id is required")
		}
		return orders.State{Input: in}, nil
	}).
		Send("reserve-stock", workflows.CommandStep[orders.State]{
			Service: orders.InventoryService,
			Command: func(s *orders.State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: orders.ReserveStock{OrderID: s.OrderID, SKU: s.SKU, Qty: s.Qty}}, nil
			},
			Compensate: func(s *orders.State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: orders.ReleaseStock{OrderID: s.OrderID}}, nil
			},
			Timeout: goldenReplyTimeout,
		}).
		Send("charge-payment", workflows.CommandStep[orders.State]{
			Service: orders.PaymentService,
			Command: func(s *orders.State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: orders.ChargePayment{OrderID: s.OrderID, Amount: s.Amount}}, nil
			},
			OnReply: workflows.Reply(func(s *orders.State, r *orders.PaymentCharged) error { s.ChargeID = r.ChargeID; return nil }),
			Compensate: func(s *orders.State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: orders.RefundPayment{OrderID: s.OrderID}}, nil
			},
			Timeout: goldenWait,
		}).
		Send("ship-order", workflows.CommandStep[orders.State]{
			Service: orders.ShippingService,
			Command: func(s *orders.State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: orders.ShipOrder{OrderID: s.OrderID, Address: s.Address}}, nil
			},
			OnReply: workflows.Reply(func(s *orders.State, r *orders.OrderShipped) error { s.TrackingNo = r.TrackingNo; return nil }),
			Retry:   fastRetry,
			Timeout: goldenWait,
		})
}

// goldenReminder waits on a durable timer, then reserves stock.
func goldenReminder() *workflows.Definition[orders.Input, orders.State] {
	return workflows.New(goldenReminderWorkflow, 1, func(in orders.Input) (orders.State, error) {
		return orders.State{Input: in}, nil
	}).
		Delay("cool-off", goldenWait).
		Send("reserve-stock", workflows.CommandStep[orders.State]{
			Service: orders.InventoryService,
			Command: func(s *orders.State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: orders.ReserveStock{OrderID: s.OrderID, SKU: s.SKU, Qty: s.Qty}}, nil
			},
			Timeout: goldenWait,
		})
}

// goldenItems are the registrations of the fixtures' engine: with
// participants, the order participants and the ledger (snapshots every 5
// events, sealed personal fields); without, only messages and workflows.
func goldenItems(participants bool) []any {
	items := append(orders.Messages(), ledgerTypes()...)
	items = append(items, goldenOrder(), goldenReminder())
	if participants {
		items = append(items, orders.Inventory(), orders.Payments(), orders.Shipping(), ledgerAggregate(5))
	}
	return items
}

// goldenExpected is what the fixture holds, as read back by the generator
// (expected.json).
type goldenExpected struct {
	Format   string                    `json:"format"`
	Streams  map[string]goldenStream   `json:"streams"`
	Sagas    map[string]goldenSagaView `json:"sagas"`
	Snapshot goldenSnapshot            `json:"snapshot"`
	Timers   []string                  `json:"timers"`
}

type goldenStream struct {
	Version uint64     `json:"version"`
	Meta    store.Meta `json:"meta"`
	Events  []string   `json:"events"`
	Outbox  []string   `json:"outbox,omitempty"`
}

type goldenSagaView struct {
	Workflow string             `json:"workflow"`
	Status   workflows.Status   `json:"status"`
	History  []workflows.Record `json:"history"`
}

type goldenSnapshot struct {
	Stream  string          `json:"stream"`
	Version uint64          `json:"version"`
	State   json.RawMessage `json:"state"`
}

// goldenEngine runs an engine on st until stop is called.
func goldenEngine(t *testing.T, st store.Store, participants bool) (e *engine.Engine, stop func()) {
	t.Helper()
	opts := engine.Options{Store: st, AdminAddr: engine.AdminOff, Logger: quietLogger(), TimerInterval: 50 * time.Millisecond, RelayInterval: 50 * time.Millisecond}
	if !participants {
		tr := inmem.New()
		t.Cleanup(func() { _ = tr.Close() })
		opts.Transport = unreachableInventory{tr}
	}
	e = engine.New(opts).Register(goldenItems(participants)...)
	if err := e.Err(); err != nil {
		t.Fatalf("register: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("engine stopped with error: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("engine did not stop within 20s")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case err := <-done:
		t.Fatalf("engine stopped before ready: %v", err)
	case <-e.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("engine not ready within 20s")
	}
	return e, stop
}

func goldenStart(t *testing.T, e *engine.Engine, id, workflow string, in orders.Input) {
	t.Helper()
	input, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.StartSaga(context.Background(), engine.StartRequest{Workflow: workflow, ID: id, Input: input, CorrelationID: in.OrderID}); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
}

// waitHistory polls until saga id's history holds a record of event at
// step.
func waitHistory(t *testing.T, e *engine.Engine, id, event, step string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := e.GetSaga(context.Background(), id)
		if err == nil && slices.ContainsFunc(s.History, func(r workflows.Record) bool { return r.Event == event && r.Step == step }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("saga %s: no %s of %s within 20s (%v)", id, event, step, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// generateGolden runs the scenario on st: two sagas to their ends, the
// ledger account past a snapshot with a sealed personal field, a saga on a
// durable delay, and (on an engine without participants) a saga waiting
// for a reply.
func generateGolden(t *testing.T, st store.Store) {
	e, stop := goldenEngine(t, st, true)
	for _, g := range goldenSagas[:2] {
		goldenStart(t, e, g.id, g.workflow, g.input)
		if s := waitSaga(t, e, g.id); s.Status != g.atFixture {
			t.Fatalf("saga %s ended %s (%s), want %s", g.id, s.Status, s.Error, g.atFixture)
		}
	}
	send(t, e, goldenAccount, &openAccount{Customer: goldenCustomer, Name: "Grace Golden", Email: "grace@golden.example", BirthYear: 1906, Plan: "gold"}, 1)
	send(t, e, goldenAccount, &deposit{Amount: 7, Count: 3, Note: "first"}, 2)
	send(t, e, goldenAccount, &deposit{Amount: 11, Count: 3, Note: "second"}, 3)
	send(t, e, goldenAccount, &deposit{Amount: 13, Count: 1}, 4)
	waitSnapshot(t, st, actors.AggregateStream(ledgerType, goldenAccount), 3)
	g := goldenSagas[2]
	goldenStart(t, e, g.id, g.workflow, g.input)
	waitHistory(t, e, g.id, workflows.EventStepWaiting, "cool-off")
	stop()

	e, stop = goldenEngine(t, st, false)
	g = goldenSagas[3]
	goldenStart(t, e, g.id, g.workflow, g.input)
	waitHistory(t, e, g.id, workflows.EventStepStarted, "reserve-stock")
	stop()
	// The command is still in the outbox: no engine served inventory.
	pending, err := st.PendingOutbox(context.Background(), time.Now().Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	var inflight []string
	for _, p := range pending {
		t.Logf("pending outbox entry: %s v%d %s", p.Stream, p.Version, p.Message.Type)
		if p.Stream == actors.SagaStream(g.id) {
			inflight = append(inflight, p.Message.Type)
		}
	}
	if !slices.Equal(inflight, []string{"inventory.ReserveStock.v1"}) {
		t.Fatalf("the in-flight saga's outbox holds %v, want its ReserveStock command", inflight)
	}
}

// unreachableInventory is a transport on which the inventory service
// cannot be reached: its commands stay in the outbox.
type unreachableInventory struct {
	transport.Transport
}

func (u unreachableInventory) Publish(ctx context.Context, e message.Envelope) error {
	if e.Destination == orders.InventoryService {
		return fmt.Errorf("golden generator: %s is unreachable", e.Destination)
	}
	return u.Transport.Publish(ctx, e)
}

// readGolden reads back what st holds, as expected.json records it.
func readGolden(t *testing.T, st store.Store, format string) goldenExpected {
	t.Helper()
	ctx := context.Background()
	reg := engine.New(engine.Options{AdminAddr: engine.AdminOff}).Register(goldenItems(true)...)
	if err := reg.Err(); err != nil {
		t.Fatal(err)
	}
	registry := reg.Registry()
	shredder := shred.New(st, registry)
	exp := goldenExpected{Format: format, Streams: map[string]goldenStream{}, Sagas: map[string]goldenSagaView{}}
	{
		after := ""
		for {
			infos, err := st.List(ctx, store.ListFilter{After: after, Limit: 100})
			if err != nil {
				t.Fatalf("list streams: %v", err)
			}
			for _, info := range infos {
				commits, err := st.Load(ctx, info.Stream, 1)
				if err != nil {
					t.Fatalf("load %s: %v", info.Stream, err)
				}
				gs := goldenStream{Version: info.Version, Meta: info.Meta}
				for i, c := range commits {
					if c.Version != uint64(i+1) || c.Stream != info.Stream {
						t.Errorf("%s: commit %d is %s v%d", info.Stream, i, c.Stream, c.Version)
					}
					for _, ev := range c.Events {
						payload, _, err := shredder.Open(ctx, ev)
						if err != nil {
							t.Errorf("%s v%d: open event %s: %v", info.Stream, c.Version, ev.Type, err)
							continue
						}
						if _, err := registry.Decode(ev.Type, payload); err != nil {
							t.Errorf("%s v%d: decode event %s: %v", info.Stream, c.Version, ev.Type, err)
						}
						gs.Events = append(gs.Events, ev.Type)
					}
					for _, m := range c.Outbox {
						if _, err := registry.DecodeEnvelope(m); err != nil {
							t.Errorf("%s v%d: decode outbox message %s: %v", info.Stream, c.Version, m.Type, err)
						}
						gs.Outbox = append(gs.Outbox, m.Type)
					}
				}
				exp.Streams[info.Stream] = gs
			}
			if len(infos) < 100 {
				break
			}
			after = infos[len(infos)-1].Stream
		}
	}
	deps := &actors.Deps{Store: st, Registry: registry}
	for _, g := range goldenSagas {
		snap, err := actors.LoadSaga(ctx, deps, g.id)
		if err != nil {
			t.Fatalf("load saga %s: %v", g.id, err)
		}
		exp.Sagas[g.id] = goldenSagaView{Workflow: snap.Instance.Workflow, Status: snap.Instance.Status, History: snap.History}
	}
	stream := actors.AggregateStream(ledgerType, goldenAccount)
	snap, ok, err := st.LoadSnapshot(ctx, stream)
	if err != nil || !ok {
		t.Fatalf("load snapshot of %s: %t, %v", stream, ok, err)
	}
	exp.Snapshot = goldenSnapshot{Stream: stream, Version: snap.Version}
	due, err := st.DueTimers(ctx, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, tm := range due {
		exp.Timers = append(exp.Timers, tm.Stream+" "+tm.Message.Type)
	}
	sort.Strings(exp.Timers)
	return exp
}

// snapshotHider hides snapshots when hide is set (so a load replays the
// whole stream) and records the first version of each Load of stream.
type snapshotHider struct {
	store.Store
	stream string
	mu     sync.Mutex
	hide   bool
	froms  []uint64
}

func (h *snapshotHider) LoadSnapshot(ctx context.Context, stream string) (store.Snapshot, bool, error) {
	h.mu.Lock()
	hide := h.hide
	h.mu.Unlock()
	if hide && stream == h.stream {
		return store.Snapshot{}, false, nil
	}
	return h.Store.LoadSnapshot(ctx, stream)
}

func (h *snapshotHider) Load(ctx context.Context, stream string, from uint64) ([]store.Commit, error) {
	if stream == h.stream {
		h.mu.Lock()
		h.froms = append(h.froms, from)
		h.mu.Unlock()
	}
	return h.Store.Load(ctx, stream, from)
}

func (h *snapshotHider) set(hide bool) {
	h.mu.Lock()
	h.hide, h.froms = hide, nil
	h.mu.Unlock()
}

func (h *snapshotHider) loadedFrom() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.froms)
}

// stateAt returns the account's state after commit version.
func stateAt(t *testing.T, e *engine.Engine, version uint64) json.RawMessage {
	t.Helper()
	v, err := e.AggregateStateAt(context.Background(), ledgerService, goldenAccount, engine.AggregateAt{Version: version})
	if err != nil {
		t.Fatalf("state of %s at v%d: %v", goldenAccount, version, err)
	}
	b, err := json.Marshal(v.State)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func goldenDir(kind string) string {
	return filepath.Join("testdata", "golden", goldenVersions[kind], kind)
}

// goldenSetExists reports whether the current set of kind is committed,
// so that -update-golden leaves it alone.
func goldenSetExists(t *testing.T, kind string) bool {
	t.Helper()
	if _, err := os.Stat(filepath.Join(goldenDir(kind), "expected.json")); err == nil {
		t.Logf("%s exists; not writing over a committed set", goldenDir(kind))
		return true
	}
	return false
}

// TestGoldenFixtures loads every committed fixture set into a fresh store
// and checks it reads back and carries on; with -update-golden it writes
// the current version's set instead.
func TestGoldenFixtures(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		if *updateGolden && !goldenSetExists(t, "embedded") {
			writeEmbeddedGolden(t)
		}
		dirs, _ := filepath.Glob(filepath.Join("testdata", "golden", "v*", "embedded"))
		if len(dirs) == 0 {
			t.Fatal("no golden fixtures under testdata/golden/v*/embedded")
		}
		for _, dir := range dirs {
			t.Run(filepath.Base(filepath.Dir(dir)), func(t *testing.T) {
				tmp := t.TempDir()
				copyEmbeddedFixture(t, dir, tmp)
				st, err := embedded.Open(context.Background(), tmp)
				if err != nil {
					t.Fatalf("open the fixture: %v", err)
				}
				checkGolden(t, dir, st)
			})
			t.Run(filepath.Base(filepath.Dir(dir))+"-as-a-later-format", func(t *testing.T) {
				tmp := t.TempDir()
				copyEmbeddedFixture(t, dir, tmp)
				markEmbeddedFormat(t, tmp, goldenLaterFormat)
				st, err := embedded.Open(context.Background(), tmp)
				checkRefused(t, st, err, embedded.FormatVersion)
			})
		}
	})
	t.Run("mongo", func(t *testing.T) {
		uri := testenv.MongoDB(t)
		if *updateGolden && !goldenSetExists(t, "mongo") {
			writeMongoGolden(t, uri)
		}
		dirs, _ := filepath.Glob(filepath.Join("testdata", "golden", "v*", "mongo"))
		if len(dirs) == 0 {
			t.Fatal("no golden fixtures under testdata/golden/v*/mongo")
		}
		for _, dir := range dirs {
			t.Run(filepath.Base(filepath.Dir(dir)), func(t *testing.T) {
				db := freshDatabase(t, uri)
				insertMongoFixture(t, uri, db, dir)
				st, err := mongostore.Open(context.Background(), uri, mongostore.WithDatabase(db))
				if err != nil {
					t.Fatalf("open the fixture: %v", err)
				}
				checkGolden(t, dir, st)
			})
			t.Run(filepath.Base(filepath.Dir(dir))+"-as-a-later-format", func(t *testing.T) {
				db := freshDatabase(t, uri)
				insertMongoFixture(t, uri, db, dir)
				client, err := mongo.Connect(options.Client().ApplyURI(uri))
				if err != nil {
					t.Fatal(err)
				}
				defer client.Disconnect(context.Background())
				if _, err := client.Database(db).Collection("meta").UpdateOne(context.Background(),
					bson.D{{Key: "_id", Value: "format"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: goldenLaterFormat}}}}); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				st, err := mongostore.Open(ctx, uri, mongostore.WithDatabase(db))
				checkRefused(t, st, err, mongostore.FormatVersion)
			})
		}
	})
}

// goldenLaterFormat stands for a stored format of a later release.
const goldenLaterFormat = "999"

// checkRefused checks that Open refused a store of goldenLaterFormat with
// store.ErrUnsupportedFormat naming both versions.
func checkRefused(t *testing.T, st store.Store, err error, current string) {
	t.Helper()
	if err == nil {
		_ = st.Close()
		t.Fatalf("Open accepted a store of format %s", goldenLaterFormat)
	}
	if !errors.Is(err, store.ErrUnsupportedFormat) || !strings.Contains(err.Error(), `"`+goldenLaterFormat+`"`) || !strings.Contains(err.Error(), `"`+current+`"`) {
		t.Fatalf("Open of a store of format %s: %v; want store.ErrUnsupportedFormat naming formats %s and %s", goldenLaterFormat, err, goldenLaterFormat, current)
	}
	t.Logf("refused as expected: %v", err)
}

// checkGolden checks the fixture set in dir, loaded into st (which it
// closes).
func checkGolden(t *testing.T, dir string, st store.Store) {
	ctx := context.Background()
	var want goldenExpected
	raw, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatalf("expected.json: %v", err)
	}
	got := readGolden(t, st, want.Format)
	gb, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	wb, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gb, wb) {
		t.Fatalf("the fixture reads back differently from expected.json:\n%s", firstDiff(string(wb), string(gb)))
	}

	// Carry on: the same workflows and participants.
	hider := &snapshotHider{Store: st, stream: want.Snapshot.Stream}
	t.Cleanup(func() { _ = st.Close() })
	e, stop := goldenEngine(t, hider, true)

	// The snapshot loads, and its state is the full replay's.
	hider.set(false)
	fromSnapshot := stateAt(t, e, want.Snapshot.Version)
	if froms := hider.loadedFrom(); len(froms) == 0 || froms[0] != want.Snapshot.Version+1 {
		t.Errorf("the load at the snapshot's version read the stream from %v, want from v%d (the snapshot unused)", froms, want.Snapshot.Version+1)
	}
	hider.set(true)
	replayed := stateAt(t, e, want.Snapshot.Version)
	if froms := hider.loadedFrom(); len(froms) == 0 || froms[0] != 1 {
		t.Errorf("the replay read the stream from %v, want from v1", froms)
	}
	hider.set(false)
	if !bytes.Equal(fromSnapshot, replayed) {
		t.Errorf("state from the snapshot at v%d = %s, full replay = %s", want.Snapshot.Version, fromSnapshot, replayed)
	}
	var acc account
	if err := json.Unmarshal(replayed, &acc); err != nil {
		t.Fatal(err)
	}
	if acc.Name != "Grace Golden" || acc.Email != "grace@golden.example" || acc.Customer != goldenCustomer {
		t.Errorf("the sealed personal fields did not open: %+v", acc)
	}

	// The in-flight sagas carry on to their ends; the ended ones stay.
	for _, g := range goldenSagas {
		ctx, cancel := context.WithTimeout(ctx, goldenWait+30*time.Second)
		s, err := e.WaitSaga(ctx, g.id)
		cancel()
		if err != nil {
			t.Fatalf("saga %s: %v", g.id, err)
		}
		if s.Status != g.final {
			t.Errorf("saga %s ended %s (%s), want %s", g.id, s.Status, s.Error, g.final)
		}
		fixture := want.Sagas[g.id].History
		if len(s.History) < len(fixture) || !reflect.DeepEqual(s.History[:len(fixture)], fixture) {
			t.Errorf("saga %s: its history does not continue the fixture's", g.id)
		}
		if g.atFixture.Terminal() && len(s.History) != len(fixture) {
			t.Errorf("saga %s ended in the fixture but its history grew: %d records, fixture %d", g.id, len(s.History), len(fixture))
		}
		if g.final == workflows.StatusCompleted {
			if g.workflow == goldenOrderWorkflow {
				checkEffects(t, st, g.input.OrderID, completedEffects)
			} else if got := eventTypes(t, st, "inventory.Reservation", g.input.OrderID); !equalStrings(got, []string{"inventory.StockReserved.v1"}) {
				t.Errorf("order %s: reservation events %v", g.input.OrderID, got)
			}
		}
	}
	if s, err := e.GetSaga(ctx, "golden-timer"); err == nil && len(stepEvents(s, "cool-off")) < 2 {
		t.Errorf("the delay's timer did not fire: cool-off records %v", stepEvents(s, "cool-off"))
	}
	// The ledger takes new commands on the loaded stream.
	v := send(t, e, goldenAccount, &deposit{Amount: 1, Note: "after load"}, want.Streams[want.Snapshot.Stream].Version+1)
	if a := accountOf(t, v); a.Deposits != 8 || a.Balance != 3*7+3*11+13+1 {
		t.Errorf("after a new deposit: %+v", a)
	}
	stop()
}

// firstDiff shows the first line where a and b differ.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if strings.TrimSpace(x) != strings.TrimSpace(y) {
			return fmt.Sprintf("line %d:\n  expected: %s\n  got:      %s", i+1, x, y)
		}
	}
	return "(they differ in order or whitespace only)"
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeExpected(t *testing.T, dir string, exp goldenExpected) {
	t.Helper()
	b, err := json.MarshalIndent(exp, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "expected.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeEmbeddedGolden(t *testing.T) {
	dir := goldenDir("embedded")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	st, err := embedded.Open(context.Background(), tmp)
	if err != nil {
		t.Fatal(err)
	}
	generateGolden(t, st)
	exp := readGolden(t, st, embedded.FormatVersion)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	compactPebble(t, filepath.Join(tmp, embedded.DefaultDirName))
	copyDir(t, filepath.Join(tmp, embedded.DefaultDirName), filepath.Join(dir, embedded.DefaultDirName))
	writeExpected(t, dir, exp)
}

// compactPebble rewrites the database at path into table files and
// empties its write-ahead log, so the fixture holds the keys and values
// once (and small).
func compactPebble(t *testing.T, path string) {
	t.Helper()
	db, err := pebble.Open(path, &pebble.Options{FormatMajorVersion: pebble.FormatNewest})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// fixtureSkip are the files of a store directory a fixture leaves out:
// the locks, which every Open makes anew.
var fixtureSkip = map[string]bool{"LOCK": true, "sagaflow.lock": true}

// copyDir copies the regular files of directory from into directory to.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() && !fixtureSkip[e.Name()] {
			copyFile(t, filepath.Join(from, e.Name()), filepath.Join(to, e.Name()))
		}
	}
}

// copyEmbeddedFixture copies an embedded fixture set's store into dir:
// the bbolt file of format 1 or the Pebble directory of later formats.
func copyEmbeddedFixture(t *testing.T, set, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(set, embedded.LegacyFileName)); err == nil {
		copyFile(t, filepath.Join(set, embedded.LegacyFileName), filepath.Join(dir, embedded.LegacyFileName))
		return
	}
	copyDir(t, filepath.Join(set, embedded.DefaultDirName), filepath.Join(dir, embedded.DefaultDirName))
}

// pebbleFormatKey is the embedded store's format marker in its Pebble key
// space: the info bucket's prefix byte (store/embedded/kv.go) and "format".
var pebbleFormatKey = []byte("\x09format")

// markEmbeddedFormat sets the format marker of the store copied into dir
// to format, in the bbolt file (format 1) or the Pebble database.
func markEmbeddedFormat(t *testing.T, dir, format string) {
	t.Helper()
	if path := filepath.Join(dir, embedded.LegacyFileName); fileExists(path) {
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("info")).Put([]byte("format"), []byte(format))
		}); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return
	}
	db, err := pebble.Open(filepath.Join(dir, embedded.DefaultDirName), &pebble.Options{FormatMajorVersion: pebble.FormatNewest})
	if err != nil {
		t.Fatal(err)
	}
	if v, closer, err := db.Get(pebbleFormatKey); err != nil || string(v) != embedded.FormatVersion {
		t.Fatalf("the fixture's format marker is %q, %v; want %q", v, err, embedded.FormatVersion)
	} else {
		_ = closer.Close()
	}
	if err := db.Set(pebbleFormatKey, []byte(format), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func writeMongoGolden(t *testing.T, uri string) {
	dir := goldenDir("mongo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	db := freshDatabase(t, uri)
	st, err := mongostore.Open(context.Background(), uri, mongostore.WithDatabase(db))
	if err != nil {
		t.Fatal(err)
	}
	generateGolden(t, st)
	exp := readGolden(t, st, mongostore.FormatVersion)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	dumpMongo(t, uri, db, dir)
	writeExpected(t, dir, exp)
}

// dumpMongo writes every collection of db as <collection>.jsonl: one
// document a line, in canonical Extended JSON, ordered by _id.
func dumpMongo(t *testing.T, uri, db, dir string) {
	t.Helper()
	ctx := context.Background()
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	names, err := client.Database(db).ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	for _, name := range names {
		cur, err := client.Database(db).Collection(name).Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		for cur.Next(ctx) {
			line, err := bson.MarshalExtJSON(cur.Current, true, false)
			if err != nil {
				t.Fatal(err)
			}
			buf.Write(line)
			buf.WriteByte('\n')
		}
		if err := cur.Err(); err != nil {
			t.Fatal(err)
		}
		_ = cur.Close(ctx)
		if buf.Len() == 0 {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name+".jsonl"), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// insertMongoFixture inserts the raw documents of dir's *.jsonl files
// into database db.
func insertMongoFixture(t *testing.T, uri, db, dir string) {
	t.Helper()
	ctx := context.Background()
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if len(files) == 0 {
		t.Fatalf("no *.jsonl in %s", dir)
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		var docs []any
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
		for sc.Scan() {
			var doc bson.D
			if err := bson.UnmarshalExtJSON(sc.Bytes(), true, &doc); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			docs = append(docs, doc)
		}
		_ = fh.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".jsonl")
		if _, err := client.Database(db).Collection(name).InsertMany(ctx, docs); err != nil {
			t.Fatalf("insert %s: %v", name, err)
		}
	}
}
