package aggregate_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sagaflow/sagaflow/aggregate"
)

type account struct {
	ID      string
	Balance int
}

type deposit struct{ Amount int }
type withdraw struct{ Amount int }
type deposited struct{ Amount int }
type withdrawn struct{ Amount int }

var errInsufficient = errors.New("insufficient funds")

func accounts() *aggregate.Definition[account] {
	d := aggregate.New("bank", "bank.Account", func(id string) account { return account{ID: id} })
	aggregate.Handle(d, func(s account, c *deposit) ([]any, error) {
		if c.Amount <= 0 {
			return nil, fmt.Errorf("deposit of %d: must be positive", c.Amount)
		}
		return []any{deposited(*c)}, nil
	})
	aggregate.Handle(d, func(s account, c *withdraw) ([]any, error) {
		if c.Amount > s.Balance {
			return nil, aggregate.Retryable(fmt.Errorf("%w: %d > %d", errInsufficient, c.Amount, s.Balance))
		}
		return []any{withdrawn(*c)}, nil
	})
	aggregate.Apply(d, func(s account, e *deposited) account { s.Balance += e.Amount; return s })
	aggregate.Apply(d, func(s account, e *withdrawn) account { s.Balance -= e.Amount; return s })
	return d
}

func TestDecideAndApplyFoldAStream(t *testing.T) {
	d := accounts()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	state := d.Initial("acc-1")
	steps := []struct {
		cmd       any
		wantErr   string
		retryable bool
		balance   int
	}{
		{&deposit{Amount: 50}, "", false, 50},
		{&withdraw{Amount: 20}, "", false, 30},
		{&withdraw{Amount: 99}, "insufficient funds: 99 > 30", true, 30},
		{&deposit{Amount: -1}, "must be positive", false, 30},
	}
	for i, s := range steps {
		events, err := d.Decide(state, s.cmd)
		if s.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), s.wantErr) || aggregate.IsRetryable(err) != s.retryable {
				t.Fatalf("step %d: err = %v (retryable %v), want %q (retryable %v)", i, err, aggregate.IsRetryable(err), s.wantErr, s.retryable)
			}
			if events != nil {
				t.Fatalf("step %d: a rejection returned events %v", i, events)
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		for _, ev := range events {
			// Decide returns values; the engine applies pointers.
			switch e := ev.(type) {
			case deposited:
				state, err = d.Apply(state, &e)
			case withdrawn:
				state, err = d.Apply(state, &e)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if got := state.(account).Balance; got != s.balance {
			t.Fatalf("step %d: balance %d, want %d", i, got, s.balance)
		}
	}
	if !errors.Is(aggregate.Retryable(errInsufficient), errInsufficient) || aggregate.Retryable(nil) != nil {
		t.Error("Retryable does not wrap as expected")
	}
}

func TestMisuseIsAnErrorNotAPanic(t *testing.T) {
	d := accounts()
	type unknown struct{}
	cases := []struct {
		name string
		call func() error
		want string
	}{
		{"unhandled command", func() error { _, err := d.Decide(d.Initial("a"), &unknown{}); return err }, "no handler"},
		{"command by value", func() error { _, err := d.Decide(d.Initial("a"), deposit{}); return err }, "must be a pointer"},
		{"nil command", func() error { _, err := d.Decide(d.Initial("a"), nil); return err }, "must be a pointer"},
		{"wrong state type", func() error { _, err := d.Decide("not an account", &deposit{Amount: 1}); return err }, "state is string"},
		{"unapplied event", func() error { _, err := d.Apply(d.Initial("a"), &unknown{}); return err }, "no handler"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

func TestValidateReportsIncompleteDefinitions(t *testing.T) {
	empty := aggregate.New[account]("", "", nil)
	err := empty.Validate()
	for _, want := range []string{"no name", "no service", "no initial state", "handles no command"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to say %q", err, want)
		}
	}
	twice := accounts()
	aggregate.Handle(twice, func(s account, c *deposit) ([]any, error) { return nil, nil })
	if err := twice.Validate(); err == nil || !strings.Contains(err.Error(), "handled twice") {
		t.Errorf("a command handled twice: Validate = %v", err)
	}
}
