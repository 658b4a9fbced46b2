package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/actors"
	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
)

func openEmbedded(t *testing.T, dir string) store.Store {
	t.Helper()
	st, err := embedded.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// waitSnapshot polls until stream has a snapshot at version want or later.
func waitSnapshot(t *testing.T, st store.Store, stream string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		snap, ok, err := st.LoadSnapshot(context.Background(), stream)
		if err != nil {
			t.Fatalf("LoadSnapshot(%s): %v", stream, err)
		}
		if ok && snap.Version >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot of %s at v%d within 20s (have %t v%d)", stream, want, ok, snap.Version)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// accountV2 is a later shape of the account state: a snapshot of account
// does not fit it.
type accountV2 struct {
	ID       string `json:"id"`
	Customer string `json:"customer"`
	Balance  int    `json:"balance"`
	Deposits int    `json:"deposits"`
	Frozen   bool   `json:"frozen"`
}

func ledgerAggregateV2() *aggregate.Definition[accountV2] {
	d := aggregate.New(ledgerService, ledgerType, func(id string) accountV2 { return accountV2{ID: id} })
	aggregate.Handle(d, func(s accountV2, c *deposit) ([]any, error) { return []any{deposited{Amount: c.Amount}}, nil })
	aggregate.Apply(d, func(s accountV2, e *accountOpened) accountV2 { s.Customer = e.Customer; return s })
	aggregate.Apply(d, func(s accountV2, e *deposited) accountV2 { s.Balance += e.Amount; s.Deposits++; return s })
	return d.SnapshotEvery(50)
}

// TestSnapshotsBoundEventsRead grows one account to 1,051 events in
// commits of 7 events and checks, as it grows, that loading it reads at
// most the snapshot interval of events; then that a snapshot of another
// state shape, or one that does not decode, is ignored: the load replays
// the whole stream and still gets the right state.
func TestSnapshotsBoundEventsRead(t *testing.T) {
	forEachStore(t, func(t *testing.T, s testStore) { testSnapshotsBoundEventsRead(t, s.open(t)) })
}

func testSnapshotsBoundEventsRead(t *testing.T, base store.Store) {
	const (
		every     = 50
		perCmd    = 7
		commands  = 150
		amount    = 3
		accountID = "acc-snap"
	)
	cs := &countingStore{Store: base}
	e := newLedgerEngine(t, engine.Options{Store: cs}, append(ledgerTypes(), ledgerAggregate(every))...)
	stream := actors.AggregateStream(ledgerType, accountID)
	send(t, e, accountID, &openAccount{Customer: "c1", Name: "N", Plan: "basic"}, 1)
	maxRead, lastSnap := int64(0), uint64(0)
	for i := 1; i <= commands; i++ {
		version := uint64(i + 1)
		seq, prev := uint64(1+i*perCmd), uint64(1+(i-1)*perCmd)
		if seq/every != prev/every {
			lastSnap = version
		}
		send(t, e, accountID, &deposit{Amount: amount, Count: perCmd}, version)
		if i%10 != 0 {
			continue
		}
		waitSnapshot(t, base, stream, lastSnap)
		cs.events.Store(0)
		v, err := e.AggregateStateAt(context.Background(), ledgerService, accountID, engine.AggregateAt{})
		if err != nil {
			t.Fatal(err)
		}
		read := cs.events.Load()
		maxRead = max(maxRead, read)
		if got := accountOf(t, v); got.Balance != i*perCmd*amount || got.Deposits != i*perCmd || v.Version != version {
			t.Fatalf("after %d deposits: version %d, %+v; want version %d, balance %d", i*perCmd, v.Version, got, version, i*perCmd*amount)
		}
		if read > every {
			t.Fatalf("stream at %d events: a load read %d events, want at most %d (the snapshot interval)", seq, read, every)
		}
	}
	total := int64(1 + commands*perCmd)
	t.Logf("stream of %d events: at most %d events read per load (snapshot every %d)", total, maxRead, every)

	// A state of another shape ignores the snapshot and replays all.
	cs2 := &countingStore{Store: base}
	e2 := newLedgerEngine(t, engine.Options{Store: cs2}, append(ledgerTypes(), ledgerAggregateV2())...)
	v2, err := e2.AggregateStateAt(context.Background(), ledgerService, accountID, engine.AggregateAt{})
	if err != nil {
		t.Fatal(err)
	}
	if got := v2.State.(accountV2); got.Balance != commands*perCmd*amount || cs2.events.Load() != total {
		t.Fatalf("other state shape: %+v after reading %d events; want balance %d from all %d events", got, cs2.events.Load(), commands*perCmd*amount, total)
	}

	// A snapshot that does not decode is ignored too.
	if err := base.SaveSnapshot(context.Background(), store.Snapshot{Stream: stream, Version: commands + 1, State: []byte("not json"), At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	cs.events.Store(0)
	v, err := e.AggregateStateAt(context.Background(), ledgerService, accountID, engine.AggregateAt{})
	if err != nil {
		t.Fatal(err)
	}
	if got := accountOf(t, v); got.Balance != commands*perCmd*amount || cs.events.Load() != total {
		t.Fatalf("broken snapshot: %+v after reading %d events; want balance %d from all %d events", got, cs.events.Load(), commands*perCmd*amount, total)
	}
}

// history builds an account with snapshots every 2 events: v1 opened
// (seq 1), v2 +10 (seq 2, snapshot), v3 +10 (seq 3), v4 +10 +10 (seq 5,
// snapshot). It returns the engine and the view after each version.
func history(t *testing.T, opts engine.Options, id string) (*engine.Engine, []engine.AggregateView) {
	t.Helper()
	e := newLedgerEngine(t, opts, append(ledgerTypes(), ledgerAggregate(2))...)
	views := []engine.AggregateView{{}}
	for i, cmd := range []any{
		&openAccount{Customer: "c-" + id, Name: "Ada", Plan: "basic"},
		&deposit{Amount: 10, Count: 1},
		&deposit{Amount: 10, Count: 1},
		&deposit{Amount: 10, Count: 2},
	} {
		time.Sleep(3 * time.Millisecond) // distinct commit times, also in milliseconds
		views = append(views, send(t, e, id, cmd, uint64(i+1)))
	}
	waitSnapshot(t, e.Store(), actors.AggregateStream(ledgerType, id), 4)
	return e, views
}

func TestAggregateStateAt(t *testing.T) {
	forEachStore(t, func(t *testing.T, s testStore) { testAggregateStateAt(t, s.options(t)) })
}

func testAggregateStateAt(t *testing.T, opts engine.Options) {
	const id = "acc-time"
	e, views := history(t, opts, id)
	// Once the snapshot at v4 exists, the latest state loads from it; its
	// commit time must be the one a replay reports.
	views[4] = waitVersion(t, e, id, 4)
	ctx := context.Background()
	balances := []int{0, 0, 10, 20, 40}
	cases := []struct {
		name        string
		at          engine.AggregateAt
		wantVersion uint64
	}{
		{"latest", engine.AggregateAt{}, 4},
		{"version 1", engine.AggregateAt{Version: 1}, 1},
		{"version 3, below the snapshot at 4", engine.AggregateAt{Version: 3}, 3},
		{"version 4", engine.AggregateAt{Version: 4}, 4},
		{"time of v2", engine.AggregateAt{Time: views[2].At}, 2},
		{"just before v3", engine.AggregateAt{Time: views[3].At.Add(-time.Nanosecond)}, 2},
		{"time of v1", engine.AggregateAt{Time: views[1].At}, 1},
		{"far future", engine.AggregateAt{Time: views[4].At.Add(time.Hour)}, 4},
	}
	for _, c := range cases {
		v, err := e.AggregateStateAt(ctx, ledgerService, id, c.at)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		a := accountOf(t, v)
		if v.Version != c.wantVersion || a.Balance != balances[c.wantVersion] || !v.At.Equal(views[c.wantVersion].At) || v.Latest != 4 || a.Name != "Ada" {
			t.Errorf("%s: version %d at %s (latest %d), %+v; want version %d at %s, balance %d",
				c.name, v.Version, v.At, v.Latest, a, c.wantVersion, views[c.wantVersion].At, balances[c.wantVersion])
		}
	}
	bad := []struct {
		name, service, id string
		at                engine.AggregateAt
		want              error
		mention           string
	}{
		{"both", ledgerService, id, engine.AggregateAt{Version: 1, Time: views[1].At}, engine.ErrInvalidRequest, "not both"},
		{"beyond latest", ledgerService, id, engine.AggregateAt{Version: 5}, engine.ErrAggregateNotFound, "version 4"},
		{"before the first commit", ledgerService, id, engine.AggregateAt{Time: views[1].At.Add(-time.Millisecond)}, engine.ErrAggregateNotFound, "did not exist"},
		{"unknown account", ledgerService, "acc-none", engine.AggregateAt{}, engine.ErrAggregateNotFound, "acc-none"},
		{"unknown service", "nobody", id, engine.AggregateAt{}, engine.ErrAggregateNotFound, "nobody"},
	}
	for _, c := range bad {
		_, err := e.AggregateStateAt(ctx, c.service, c.id, c.at)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("%s: err = %v, want %v mentioning %q", c.name, err, c.want, c.mention)
		}
	}
}

func TestAdminAggregateAt(t *testing.T) {
	const id = "acc-admin"
	e, views := history(t, engine.Options{}, id)
	path := "/v1/aggregates/" + ledgerService + "/" + id
	var got struct {
		engine.AggregateView
		State account `json:"state"`
	}
	if st, body := call(t, e, "GET", path+"?version=3", nil, nil, &got); st != 200 {
		t.Fatalf("GET ?version=3 = %d %s", st, body)
	}
	if got.Version != 3 || got.State.Balance != 20 || got.Latest != 4 || got.Type != ledgerType || got.ID != id || !got.At.Equal(views[3].At) {
		t.Errorf("GET ?version=3 = %+v, want version 3, balance 20, latest 4", got)
	}
	at := views[2].At.Format(time.RFC3339Nano)
	if st, body := call(t, e, "GET", path+"?at="+at, nil, nil, &got); st != 200 || got.Version != 2 || got.State.Balance != 10 {
		t.Errorf("GET ?at=%s = %d %s %+v, want version 2, balance 10", at, st, body, got)
	}
	if st, body := call(t, e, "GET", path, nil, nil, &got); st != 200 || got.Version != 4 || got.State.Balance != 40 {
		t.Errorf("GET latest = %d %s %+v, want version 4, balance 40", st, body, got)
	}
	for _, c := range []struct {
		query   string
		status  int
		mention string
	}{
		{"?version=1&at=" + at, 400, "not both"},
		{"?version=x", 400, "version \"x\""},
		{"?version=0", 400, "from 1"},
		{"?at=yesterday", 400, "RFC 3339"},
		{"?limit=3", 400, "unknown query parameter"},
		{"?version=99", 404, "no version 99"},
		{"?at=2000-01-01T00:00:00Z", 404, "did not exist"},
	} {
		if st, body := call(t, e, "GET", path+c.query, nil, nil, nil); st != c.status || !strings.Contains(body, c.mention) {
			t.Errorf("GET %s = %d %s, want %d mentioning %q", c.query, st, body, c.status, c.mention)
		}
	}
	if st, body := call(t, e, "GET", "/v1/aggregates/"+ledgerService+"/acc-none", nil, nil, nil); st != 404 {
		t.Errorf("GET unknown account = %d %s, want 404", st, body)
	}
	if st, body := call(t, e, "GET", "/v1/aggregates/nobody/"+id, nil, nil, nil); st != 404 || !strings.Contains(body, "nobody") {
		t.Errorf("GET unknown service = %d %s, want 404", st, body)
	}
}

// The v2 world of the ledger: a deposit in cents with a currency. Stored
// v1 events ({"amount": 5}) are upcast to it.
type depositedV2 struct {
	Cents    int    `json:"cents"`
	Currency string `json:"currency"`
	Note     string `json:"note,omitempty"`
}

type accountCents struct {
	Customer string `json:"customer"`
	Cents    int    `json:"cents"`
	Currency string `json:"currency"`
	Deposits int    `json:"deposits"`
}

func ledgerAggregateCents() *aggregate.Definition[accountCents] {
	d := aggregate.New(ledgerService, ledgerType, func(string) accountCents { return accountCents{} })
	aggregate.Handle(d, func(s accountCents, c *deposit) ([]any, error) {
		return []any{depositedV2{Cents: c.Amount * 100, Currency: "EUR"}}, nil
	})
	aggregate.Apply(d, func(s accountCents, e *accountOpened) accountCents { s.Customer = e.Customer; return s })
	aggregate.Apply(d, func(s accountCents, e *depositedV2) accountCents {
		s.Cents += e.Cents
		s.Currency = e.Currency
		s.Deposits++
		return s
	})
	return d
}

func centsTypes() []any {
	return []any{
		engine.Message[openAccount]("ledger.OpenAccount.v1"),
		engine.Message[deposit]("ledger.Deposit.v1"),
		engine.Message[accountOpened]("ledger.AccountOpened.v1"),
		engine.Message[depositedV2]("ledger.Deposited.v2"),
	}
}

// upcastDeposited turns a v1 deposit (whole euros) into a v2 one.
func upcastDeposited(old json.RawMessage) (json.RawMessage, error) {
	var v1 struct {
		Amount int    `json:"amount"`
		Note   string `json:"note,omitempty"`
	}
	if err := json.Unmarshal(old, &v1); err != nil {
		return nil, fmt.Errorf("v1 deposit: %w", err)
	}
	return json.Marshal(depositedV2{Cents: v1.Amount * 100, Currency: "EUR", Note: v1.Note})
}

// TestUpcastStoredEvents stores v1 events through one engine, then loads
// the aggregate in an engine that registers only v2 and an upcaster; it
// also appends v2 events next to the v1 ones. Without the upcaster the
// load fails naming the type and version.
func TestUpcastStoredEvents(t *testing.T) {
	const id = "acc-upcast"
	st := openEmbedded(t, t.TempDir())
	v1 := newLedgerEngine(t, engine.Options{Store: st}, append(ledgerTypes(), ledgerAggregate(0))...)
	send(t, v1, id, &openAccount{Customer: "c9", Plan: "basic"}, 1)
	send(t, v1, id, &deposit{Amount: 5, Count: 3}, 2)
	if got := eventTypes(t, st, ledgerType, id); strings.Join(got, ",") != "ledger.AccountOpened.v1,ledger.Deposited.v1,ledger.Deposited.v1,ledger.Deposited.v1" {
		t.Fatalf("stored event types %v, want v1 deposits", got)
	}

	v2 := newLedgerEngine(t, engine.Options{Store: st},
		append(centsTypes(), engine.Upcaster("ledger.Deposited", 1, upcastDeposited), ledgerAggregateCents())...)
	ctx := context.Background()
	view, err := v2.AggregateStateAt(ctx, ledgerService, id, engine.AggregateAt{})
	if err != nil {
		t.Fatalf("load v1 events in the v2 world: %v", err)
	}
	if got := view.State.(accountCents); got != (accountCents{Customer: "c9", Cents: 1500, Currency: "EUR", Deposits: 3}) {
		t.Fatalf("state from upcast events = %+v, want 1500 EUR cents in 3 deposits", got)
	}
	// New commands write v2 events after the v1 ones.
	if _, err := v2.Send(ctx, ledgerService, id, &deposit{Amount: 2}, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for view.Version < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		if view, err = v2.AggregateStateAt(ctx, ledgerService, id, engine.AggregateAt{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := view.State.(accountCents); view.Version != 3 || got.Cents != 1700 || got.Deposits != 4 {
		t.Fatalf("after a v2 deposit: version %d, %+v; want version 3, 1700 cents", view.Version, got)
	}
	if got := eventTypes(t, st, ledgerType, id); got[len(got)-1] != "ledger.Deposited.v2" {
		t.Fatalf("last stored event is %s, want ledger.Deposited.v2", got[len(got)-1])
	}

	noUpcaster := newLedgerEngine(t, engine.Options{Store: st}, append(centsTypes(), ledgerAggregateCents())...)
	_, err = noUpcaster.AggregateStateAt(ctx, ledgerService, id, engine.AggregateAt{})
	if !errors.Is(err, message.ErrUnknownType) || !strings.Contains(err.Error(), `"ledger.Deposited.v1"`) || !strings.Contains(err.Error(), "no upcaster turns ledger.Deposited v1 into v2") {
		t.Fatalf("load without an upcaster: err = %v, want ErrUnknownType naming ledger.Deposited.v1 and the missing upcaster", err)
	}
}
