package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/workflows"
)

func TestValidateNamesEachProblemAndItsStep(t *testing.T) {
	bare := func(f func(*workflows.CommandStep[orderState])) workflows.CommandStep[orderState] {
		c := chargeStep()
		f(&c)
		return c
	}
	cases := []struct {
		name     string
		def      workflows.Workflow
		mentions []string
	}{
		{"empty workflow name", workflows.New("", 1, initOrder).Send("reserve-stock", reserveStep()),
			[]string{"no name"}},
		{"version 0", workflows.New(wfName, 0, initOrder).Send("reserve-stock", reserveStep()),
			[]string{"version 0", "start at 1"}},
		{"negative version", workflows.New(wfName, -3, initOrder).Send("reserve-stock", reserveStep()),
			[]string{"version -3"}},
		{"no init", workflows.New[orderInput, orderState](wfName, 1, nil).Send("reserve-stock", reserveStep()),
			[]string{"no init function"}},
		{"no steps", workflows.New(wfName, 1, initOrder),
			[]string{"no steps"}},
		{"empty step name", placeOrder().Send("", shipStep()),
			[]string{"step 3 has no name"}},
		{"duplicate step name", placeOrder().Send("charge-payment", chargeStep()),
			[]string{`step 3 "charge-payment": name already used by step 2`}},
		{"command step without Service", workflows.New(wfName, 1, initOrder).Send("reserve-stock", reserveStep()).
			Send("charge", bare(func(c *workflows.CommandStep[orderState]) { c.Service = "" })),
			[]string{`step 2 "charge": command step has no Service`}},
		{"command step without Command", workflows.New(wfName, 1, initOrder).Send("reserve-stock", reserveStep()).
			Send("charge", bare(func(c *workflows.CommandStep[orderState]) { c.Command = nil })),
			[]string{`step 2 "charge": command step has no Command`}},
		{"local step without Run", placeOrder().Do("award-points", workflows.LocalStep[orderState]{}),
			[]string{`step 3 "award-points": local step has no Run`}},
		{"command step with negative timeout", workflows.New(wfName, 1, initOrder).Send("reserve-stock", reserveStep()).
			Send("charge", bare(func(c *workflows.CommandStep[orderState]) { c.Timeout = -time.Second })),
			[]string{`step 2 "charge": timeout -1s is negative`}},
		{"local step with negative timeout", placeOrder().Do("award-points", workflows.LocalStep[orderState]{
			Run: pointsStep().Run, Timeout: -time.Minute}),
			[]string{`step 3 "award-points": timeout -1m0s is negative`}},
		{"negative attempts", workflows.New(wfName, 1, initOrder).Send("reserve-stock", reserveStep()).
			Send("charge", bare(func(c *workflows.CommandStep[orderState]) { c.Retry.MaxAttempts = -1 })),
			[]string{`step 2 "charge": retry policy: max attempts -1 is negative`}},
		{"multiplier below 1", workflows.New(wfName, 1, initOrder).Send("reserve-stock", reserveStep()).
			Send("charge", bare(func(c *workflows.CommandStep[orderState]) { c.Retry.Multiplier = 0.5 })),
			[]string{`step 2 "charge": retry policy: multiplier 0.5 is below 1`}},
		{"jitter above 1", workflows.New(wfName, 1, initOrder).Send("reserve-stock", reserveStep()).
			Send("charge", bare(func(c *workflows.CommandStep[orderState]) { c.Retry.Jitter = 1.5 })),
			[]string{`step 2 "charge": retry policy: jitter 1.5 is outside 0..1`}},
		{"initial interval above max", workflows.New(wfName, 1, initOrder).Send("reserve-stock", reserveStep()).
			Send("charge", bare(func(c *workflows.CommandStep[orderState]) {
				c.Retry = workflows.RetryPolicy{InitialInterval: 2 * time.Second, MaxInterval: time.Second}
			})),
			[]string{`step 2 "charge": retry policy: initial interval 2s exceeds max interval 1s`}},
		{"negative interval", workflows.New(wfName, 1, initOrder).Send("reserve-stock", reserveStep()).
			Send("charge", bare(func(c *workflows.CommandStep[orderState]) { c.Retry.InitialInterval = -time.Second })),
			[]string{`step 2 "charge": retry policy: intervals must not be negative`}},
		{"bad compensation retry", placeOrder().Do("award-points", workflows.LocalStep[orderState]{
			Run: pointsStep().Run, CompensationRetry: workflows.RetryPolicy{Jitter: -0.1}}),
			[]string{`step 3 "award-points": compensation retry policy: jitter -0.1`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.def.Validate()
			if !errors.Is(err, workflows.ErrInvalidDefinition) {
				t.Fatalf("Validate = %v, want ErrInvalidDefinition", err)
			}
			for _, m := range c.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error does not mention %q:\n%v", m, err)
				}
			}
		})
	}
}

func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	d := workflows.New[orderInput, orderState]("", 0, nil).
		Send("reserve-stock", workflows.CommandStep[orderState]{Command: reserveStep().Command}).
		Send("reserve-stock", workflows.CommandStep[orderState]{Service: "payments", Retry: workflows.RetryPolicy{MaxAttempts: -2, Jitter: 2}}).
		Do("", workflows.LocalStep[orderState]{Timeout: -time.Second})
	err := d.Validate()
	if !errors.Is(err, workflows.ErrInvalidDefinition) {
		t.Fatalf("Validate = %v, want ErrInvalidDefinition", err)
	}
	want := []string{
		"the workflow has no name",
		"version 0",
		"no init function",
		`step 1 "reserve-stock": command step has no Service`,
		`step 2 "reserve-stock": name already used by step 1`,
		`step 2 "reserve-stock": command step has no Command`,
		`step 2 "reserve-stock": retry policy: max attempts -2 is negative`,
		`jitter 2 is outside 0..1`,
		"step 3 has no name",
		`step 3 "": local step has no Run`,
		`step 3 "": timeout -1s is negative`,
	}
	for _, m := range want {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error does not mention %q:\n%v", m, err)
		}
	}
	// One line per problem (the retry policy's two problems share a step).
	if lines := strings.Count(err.Error(), "\n") + 1; lines < len(want)-1 {
		t.Errorf("error has %d lines for %d problems:\n%v", lines, len(want), err)
	}
}

func TestValidateAcceptsAWellFormedWorkflow(t *testing.T) {
	wf := placeOrder().Send("ship-order", compensable(shipStep())).Do("award-points", pointsStep())
	if err := wf.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestStepsDescribeTheDefinition(t *testing.T) {
	ship := compensable(shipStep())
	ship.Retry = workflows.RetryPolicy{MaxAttempts: 3}
	ship.CompensationRetry = workflows.RetryPolicy{MaxAttempts: 2}
	ship.Timeout = 0
	wf := placeOrder().Send("ship-order", ship).Do("award-points", pointsStep())
	got := wf.Steps()
	want := []workflows.StepInfo{
		{Name: "reserve-stock", Kind: workflows.KindCommand, Service: "inventory", Compensable: true,
			CompensationRetry: workflows.DefaultCompensationRetry, Timeout: 5 * time.Second, Next: 1},
		{Name: "charge-payment", Kind: workflows.KindCommand, Service: "payments", Compensable: true,
			CompensationRetry: workflows.DefaultCompensationRetry, Timeout: 5 * time.Second, Next: 2},
		{Name: "ship-order", Kind: workflows.KindCommand, Service: "shipping", Compensable: true,
			Retry: workflows.RetryPolicy{MaxAttempts: 3}, CompensationRetry: workflows.RetryPolicy{MaxAttempts: 2},
			Timeout: workflows.DefaultStepTimeout, Next: 3},
		{Name: "award-points", Kind: workflows.KindLocal, Compensable: false,
			CompensationRetry: workflows.DefaultCompensationRetry, Timeout: workflows.DefaultStepTimeout, Next: 4},
	}
	if len(got) != len(want) {
		t.Fatalf("Steps() has %d steps, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d:\n got %+v\nwant %+v", i+1, got[i], want[i])
		}
	}
	got[0].Name = "changed"
	if wf.Steps()[0].Name != "reserve-stock" {
		t.Error("Steps() shares memory with the definition")
	}
	if wf.Name() != wfName || wf.Version() != 1 || wf.InputType().Name() != "orderInput" {
		t.Errorf("Name, Version, InputType = %q, %d, %v", wf.Name(), wf.Version(), wf.InputType())
	}
}

func TestReplyAdapterChecksTheReplyType(t *testing.T) {
	f := workflows.Reply(func(s *orderState, r *paymentCharged) error {
		s.ChargeID = r.ChargeID
		return nil
	})
	var s orderState
	if err := f(&s, &paymentCharged{ChargeID: "ch-9"}); err != nil || s.ChargeID != "ch-9" {
		t.Errorf("typed reply: err %v, state %+v", err, s)
	}
	err := f(&s, &orderShipped{})
	if err == nil || !strings.Contains(err.Error(), "orderShipped") || !strings.Contains(err.Error(), "paymentCharged") {
		t.Errorf("wrong reply type: err = %v, want it to name both types", err)
	}
	if err := f(&s, paymentCharged{}); err == nil {
		t.Error("a reply value instead of a pointer was accepted")
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("no such member")
	cases := []struct {
		name      string
		err       error
		permanent bool
	}{
		{"plain error", base, false},
		{"nil", nil, false},
		{"permanent", workflows.Permanent(base), true},
		{"wrapped permanent", fmt.Errorf("award points: %w", workflows.Permanent(base)), true},
		{"joined permanent", errors.Join(errors.New("x"), workflows.Permanent(base)), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := workflows.IsPermanent(c.err); got != c.permanent {
				t.Errorf("IsPermanent = %v, want %v", got, c.permanent)
			}
			if c.permanent && !errors.Is(c.err, base) {
				t.Error("Permanent hides the error it wraps")
			}
		})
	}
	if workflows.Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
	if got := workflows.Permanent(base).Error(); got != base.Error() {
		t.Errorf("Permanent changes the message: %q", got)
	}
}

// The untyped Workflow methods are called by the engine with indexes and
// states it read from storage: misuse is an error, never a panic.
func TestWorkflowMethodsRefuseMisuse(t *testing.T) {
	wf := placeOrder().Do("award-points", pointsStep())
	s := &orderState{OrderID: "o-1"}
	ctx := context.Background()
	cases := []struct {
		name string
		call func() error
	}{
		{"command of a step out of range", func() error { _, _, _, err := wf.Command(7, s, false); return err }},
		{"command of a negative step", func() error { _, _, _, err := wf.Command(-1, s, false); return err }},
		{"command of a local step", func() error { _, _, _, err := wf.Command(2, s, false); return err }},
		{"command with a state of another type", func() error { _, _, _, err := wf.Command(0, &struct{}{}, false); return err }},
		{"run of a command step", func() error { _, err := wf.RunLocal(ctx, 0, s, false); return err }},
		{"run of a step out of range", func() error { _, err := wf.RunLocal(ctx, 3, s, false); return err }},
		{"reply to a step out of range", func() error { return wf.ApplyReply(9, s, &stockReserved{}) }},
		{"encode a state of another type", func() error { _, err := wf.EncodeState(orderState{}); return err }},
		{"decode a broken state", func() error { _, err := wf.DecodeState([]byte(`[`)); return err }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); err == nil {
				t.Error("no error")
			}
		})
	}
	// No compensation is not an error: ok is false.
	if _, _, ok, err := wf.Command(1, s, true); !ok || err != nil {
		t.Errorf("compensation of charge-payment: ok %v, err %v", ok, err)
	}
	if ok, err := wf.RunLocal(ctx, 2, s, true); ok || err != nil {
		t.Errorf("compensation of a local step without one: ok %v, err %v", ok, err)
	}
}

func TestLocalStepRunsUnderItsTimeout(t *testing.T) {
	var deadline time.Duration
	wf := workflows.New(wfName, 1, initOrder).Do("award-points", workflows.LocalStep[orderState]{
		Run: func(ctx context.Context, _ *orderState) error {
			d, ok := ctx.Deadline()
			if !ok {
				return errors.New("no deadline")
			}
			deadline = time.Until(d)
			return nil
		},
		Timeout: time.Hour,
	})
	if _, err := wf.RunLocal(context.Background(), 0, &orderState{}, false); err != nil {
		t.Fatal(err)
	}
	if deadline <= 59*time.Minute || deadline > time.Hour {
		t.Errorf("local step ran with %v left, want about its 1h timeout", deadline)
	}
}
