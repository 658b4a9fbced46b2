package workflows_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/workflows"
)

func TestValidateNamesProblemsOfTheNewStepKinds(t *testing.T) {
	branch := func(name string) workflows.Branch[orderState] {
		return workflows.Branch[orderState]{Name: name, Step: chargeStep()}
	}
	always := func(*orderState) bool { return true }
	cases := []struct {
		name     string
		def      workflows.Workflow
		mentions []string
	}{
		{"signal without name", placeOrder().Await("approval", workflows.SignalStep[orderState]{}),
			[]string{`step 3 "approval": signal step names no Signal`}},
		{"signal with negative timeout", placeOrder().Await("approval", workflows.SignalStep[orderState]{Signal: "ok", Timeout: -time.Second}),
			[]string{`step 3 "approval": timeout -1s is negative`}},
		{"event without type", placeOrder().AwaitEvent("arrives", workflows.EventStep[orderState]{}),
			[]string{`step 3 "arrives": event step names no Event type`}},
		{"event with a bad type name", placeOrder().AwaitEvent("arrives", workflows.EventStep[orderState]{Event: "no version"}),
			[]string{`step 3 "arrives": event type:`}},
		{"zero delay", placeOrder().Delay("wait", 0),
			[]string{`step 3 "wait": delay 0s must be positive`}},
		{"child without workflow", placeOrder().Child("sub", workflows.ChildStep[orderState]{}),
			[]string{`step 3 "sub": child step names no Workflow`}},
		{"child of itself", placeOrder().Child("sub", workflows.ChildStep[orderState]{Workflow: wfName}),
			[]string{`step 3 "sub": child step starts its own workflow`}},
		{"if without condition", placeOrder().If("big", nil, workflows.Steps[orderState]().Send("ship", shipStep()), nil),
			[]string{`step 3 "big": conditional step has no condition`}},
		{"bad step inside a branch", placeOrder().If("big", always, nil, workflows.Steps[orderState]().Delay("pause", -time.Second)),
			[]string{`step 4 "pause": delay -1s must be positive`}},
		{"parallel without branches", placeOrder().Parallel("p", workflows.All),
			[]string{`step 3 "p": parallel step has no branches`}},
		{"parallel with a bad mode", placeOrder().Parallel("p", "some", branch("x")),
			[]string{`step 3 "p": parallel mode "some" is not all or first_wins`}},
		{"branch reusing a step name", placeOrder().Parallel("p", workflows.All, branch("charge-payment")),
			[]string{`step 4 "charge-payment": name already used by step 2`}},
		{"negative deadline", placeOrder().Deadline(-time.Minute),
			[]string{"deadline -1m0s is negative"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.def.Validate()
			if !errors.Is(err, workflows.ErrInvalidDefinition) {
				t.Fatalf("Validate() = %v, want ErrInvalidDefinition", err)
			}
			for _, m := range c.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func TestNestedStepsAreLaidOutFlatWithTheirJumps(t *testing.T) {
	always := func(*orderState) bool { return true }
	wf := workflows.New(wfName, 1, initOrder).
		Send("a", reserveStep()).
		If("if", always,
			workflows.Steps[orderState]().
				Parallel("p", workflows.All, workflows.Branch[orderState]{Name: "b1", Step: chargeStep()}, workflows.Branch[orderState]{Name: "b2", Step: shipStep()}).
				When("inner", always, workflows.Steps[orderState]().Delay("d", time.Second)),
			workflows.Steps[orderState]().Do("e", pointsStep()),
		).
		Send("z", shipStep())
	type jump struct {
		name                  string
		next, then, els, from int
	}
	var got []jump
	for _, s := range wf.Steps() {
		got = append(got, jump{s.Name, s.Next, s.Then, s.Else, s.BranchFrom})
	}
	want := []jump{
		{"a", 1, 0, 0, 0},
		{"if", 8, 2, 7, 0},
		{"p", 5, 0, 0, 3},
		{"b1", -1, 0, 0, 0},
		{"b2", -1, 0, 0, 0},
		{"inner", 8, 6, 8, 0}, // its end and its empty else jump past the outer else
		{"d", 8, 0, 0, 0},
		{"e", 8, 0, 0, 0},
		{"z", 9, 0, 0, 0},
	}
	if len(got) != len(want) {
		t.Fatalf("steps = %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if err := wf.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestMermaidDrawsBranchesForksAndJoins(t *testing.T) {
	wf := workflows.New("x.Kinds", 2, initOrder).
		Send("reserve", reserveStep()).
		If("big", func(*orderState) bool { return true },
			workflows.Steps[orderState]().Parallel("both", workflows.FirstWins,
				workflows.Branch[orderState]{Name: "charge", Step: chargeStep()},
				workflows.Branch[orderState]{Name: "ship", Step: shipStep()}),
			workflows.Steps[orderState]().Await("ok", workflows.SignalStep[orderState]{Signal: "approved", Timeout: time.Hour}),
		).
		Delay("pause", time.Minute).
		Child("label", workflows.ChildStep[orderState]{Workflow: "labels.Print"}).
		Deadline(24 * time.Hour)
	want := `flowchart TD
    start(["start<br/>x.Kinds v2<br/>deadline 24h0m0s"])
    s1["reserve<br/>command: inventory"]
    s2{"big<br/>if"}
    s3[["both<br/>parallel: first_wins"]]
    j3{{"join both"}}
    s4["charge<br/>command: payments"]
    s5["ship<br/>command: shipping"]
    s6["ok<br/>signal: approved<br/>timeout 1h0m0s"]
    s7["pause<br/>delay 1m0s"]
    s8["label<br/>child: labels.Print"]
    completed(["completed"])
    start --> s1
    s1 --> s2
    s2 -->|then| s3
    s2 -->|else| s6
    s3 --> s4
    s4 --> j3
    s3 --> s5
    s5 --> j3
    j3 --> s7
    s6 --> s7
    s7 --> s8
    s8 --> completed
    c1["undo reserve"]
    c4["undo charge"]
    c8["undo label"]
    compensated(["compensated"])
    s1 -.-> c1
    s4 -.-> c4
    s8 -.-> c8
    c8 --> c4
    c4 --> c1
    c1 --> compensated
`
	if got := workflows.Mermaid(wf); got != want {
		t.Errorf("Mermaid:\n%s\nwant:\n%s", got, want)
	}
}

func TestAnInstanceStoredBeforeTheNewKindsStillLoadsAndRuns(t *testing.T) {
	// JSON of an instance as the engine stored it before parallel steps,
	// waits and deadlines existed: awaiting the charge, reserve done.
	old := `{"id":"saga-1","workflow":"orders.PlaceOrder","version":1,"status":"running","correlation_id":"corr-1",
		"step":1,"attempt":1,"pending":{"id":"id-9","kind":"command","type":"payments.ChargePayment.v1","destination":"payments",
		"key":"o-1","saga_id":"saga-1","occurred_at":"2026-03-01T12:00:00Z","headers":{"sagaflow-reply-to":"sagas"},"payload":{"order_id":"o-1","amount":40}},
		"timer_id":"id-10","timer_purpose":"timeout","timer_due":"2026-03-01T12:00:05Z","done":[0],
		"input":{"order_id":"o-1"},"state":{"order_id":"o-1","amount":40,"reservation_id":"r-1"},
		"created_at":"2026-03-01T12:00:00Z","updated_at":"2026-03-01T12:00:00Z"}`
	var inst workflows.Instance
	if err := json.Unmarshal([]byte(old), &inst); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, placeOrder())
	h.inst, h.persist = inst, true
	h.play(rejected("declined"), accepted())
	h.wantStatus(workflows.StatusCompensated)
	h.wantSent(sentRelease)
}
