package engine_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/store"
)

// The ledger is the event-sourcing tests' aggregate: an account of a
// customer, with personal data on its opening event and notes on its
// deposits.

const (
	ledgerService = "ledger"
	ledgerType    = "ledger.Account"
)

type openAccount struct {
	Customer  string `json:"customer"`
	Name      string `json:"name"`
	Email     string `json:"email"`
	BirthYear int    `json:"birth_year"`
	Plan      string `json:"plan"`
}

// deposit deposits Amount Count times (one event each).
type deposit struct {
	Amount int    `json:"amount"`
	Count  int    `json:"count"`
	Note   string `json:"note"`
}

// accountOpened's personal fields belong to the customer.
type accountOpened struct {
	Customer  string `json:"customer" sagaflow:"subject"`
	Name      string `json:"name" sagaflow:"personal"`
	Email     string `json:"email" sagaflow:"personal"`
	BirthYear int    `json:"birth_year" sagaflow:"personal"`
	Plan      string `json:"plan"`
}

// deposited has no subject field: its note belongs to the account (the
// aggregate ID).
type deposited struct {
	Amount int    `json:"amount"`
	Note   string `json:"note,omitempty" sagaflow:"personal"`
}

type account struct {
	ID        string   `json:"id"`
	Customer  string   `json:"customer"`
	Name      string   `json:"name"`
	Email     string   `json:"email"`
	BirthYear int      `json:"birth_year"`
	Plan      string   `json:"plan"`
	Balance   int      `json:"balance"`
	Deposits  int      `json:"deposits"`
	Notes     []string `json:"notes"`
}

// ledgerTypes registers the ledger's messages at their current versions.
func ledgerTypes() []any {
	return []any{
		engine.Message[openAccount]("ledger.OpenAccount.v1"),
		engine.Message[deposit]("ledger.Deposit.v1"),
		engine.Message[accountOpened]("ledger.AccountOpened.v1"),
		engine.Message[deposited]("ledger.Deposited.v1"),
	}
}

// ledgerAggregate defines the account aggregate; snapshotEvery 0 takes no
// snapshots.
func ledgerAggregate(snapshotEvery int) *aggregate.Definition[account] {
	d := aggregate.New(ledgerService, ledgerType, func(id string) account { return account{ID: id} })
	aggregate.Handle(d, func(s account, c *openAccount) ([]any, error) {
		if s.Customer != "" {
			return nil, errors.New("account already open")
		}
		return []any{accountOpened{Customer: c.Customer, Name: c.Name, Email: c.Email, BirthYear: c.BirthYear, Plan: c.Plan}}, nil
	})
	aggregate.Handle(d, func(s account, c *deposit) ([]any, error) {
		if s.Customer == "" {
			return nil, errors.New("no such account")
		}
		out := make([]any, max(c.Count, 1))
		for i := range out {
			out[i] = deposited{Amount: c.Amount, Note: c.Note}
		}
		return out, nil
	})
	aggregate.Apply(d, func(s account, e *accountOpened) account {
		s.Customer, s.Name, s.Email, s.BirthYear, s.Plan = e.Customer, e.Name, e.Email, e.BirthYear, e.Plan
		return s
	})
	aggregate.Apply(d, func(s account, e *deposited) account {
		s.Balance += e.Amount
		s.Deposits++
		if e.Note != "" {
			s.Notes = append(append([]string(nil), s.Notes...), e.Note)
		}
		return s
	})
	if snapshotEvery > 0 {
		d.SnapshotEvery(snapshotEvery)
	}
	return d
}

// newLedgerEngine runs an engine with the ledger (and extra registrations
// after the ledger's message types) on opts.
func newLedgerEngine(t *testing.T, opts engine.Options, items ...any) *engine.Engine {
	t.Helper()
	if opts.DataDir == "" && opts.Store == nil {
		opts.DataDir = t.TempDir()
	}
	if opts.AdminAddr == "" {
		opts.AdminAddr = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	e := engine.New(opts).Register(items...)
	if err := e.Err(); err != nil {
		t.Fatalf("register: %v", err)
	}
	runEngine(t, e)
	return e
}

// send sends a command to the ledger and waits until the account is at
// version want.
func send(t *testing.T, e *engine.Engine, id string, cmd any, want uint64) engine.AggregateView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := e.Send(ctx, ledgerService, id, cmd, nil); err != nil {
		t.Fatalf("send %T to %s: %v", cmd, id, err)
	}
	return waitVersion(t, e, id, want)
}

// waitVersion polls until account id is at version want.
func waitVersion(t *testing.T, e *engine.Engine, id string, want uint64) engine.AggregateView {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, err := e.AggregateStateAt(context.Background(), ledgerService, id, engine.AggregateAt{})
		if err == nil && v.Version >= want {
			if v.Version > want {
				t.Fatalf("account %s at version %d, want %d", id, v.Version, want)
			}
			return v
		}
		if err != nil && !errors.Is(err, engine.ErrAggregateNotFound) {
			t.Fatalf("state of %s: %v", id, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("account %s not at version %d within 20s (now %d, err %v)", id, want, v.Version, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func accountOf(t *testing.T, v engine.AggregateView) account {
	t.Helper()
	a, ok := v.State.(account)
	if !ok {
		t.Fatalf("state is %T, want account", v.State)
	}
	return a
}

// countingStore counts the events its Load calls return.
type countingStore struct {
	store.Store
	events atomic.Int64
}

func (c *countingStore) Load(ctx context.Context, stream string, from uint64) ([]store.Commit, error) {
	commits, err := c.Store.Load(ctx, stream, from)
	for _, cm := range commits {
		c.events.Add(int64(len(cm.Events)))
	}
	return commits, err
}
