package workflows_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/sagaflow/sagaflow/workflows"
)

// TestFrozenWorkflowDecidesAsItsDefinition: the order saga, frozen, makes
// the same decisions as its definition (start, first step, a reply), and
// freezing twice gives the same workflow.
func TestFrozenWorkflowDecidesAsItsDefinition(t *testing.T) {
	def := placeOrder()
	frozen := workflows.Freeze(def)
	if again := workflows.Freeze(frozen); again != frozen {
		t.Fatalf("Freeze of a frozen workflow = %p, want the same %p", again, frozen)
	}
	input, err := json.Marshal(order1)
	if err != nil {
		t.Fatal(err)
	}
	run := func(wf workflows.Workflow) []workflows.Decision {
		h := newHarness(t, wf)
		start, err := workflows.Start(wf, h.env(), sagaID, corrID, input)
		if err != nil {
			t.Fatal(err)
		}
		first, err := workflows.Resume(context.Background(), wf, h.env(), start.Instance, start.State)
		if err != nil {
			t.Fatal(err)
		}
		if first.Instance.Pending == nil {
			t.Fatal("the first step sent no command")
		}
		env, decoded := h.replyTo(*first.Instance.Pending, &stockReserved{ReservationID: "r-1"})
		second, err := workflows.OnReply(context.Background(), wf, h.env(), first.Instance, first.State, env, decoded)
		if err != nil {
			t.Fatal(err)
		}
		return []workflows.Decision{start, first, second}
	}
	want, got := run(def), run(frozen)
	for i := range want {
		if !reflect.DeepEqual(got[i].Instance, want[i].Instance) || !reflect.DeepEqual(got[i].Records, want[i].Records) || !reflect.DeepEqual(got[i].Send, want[i].Send) {
			t.Fatalf("decision %d of the frozen workflow:\n %+v\nof the definition:\n %+v", i, got[i], want[i])
		}
	}
	if len(want[2].Send) != 1 {
		t.Fatalf("the reply sent %d commands; want the charge (is the test saga the order saga?)", len(want[2].Send))
	}
}

// TestFrozenStepsAreReadWithoutACopy: StepAt reads a frozen workflow's
// list without allocating (a definition's Steps builds a new list each
// call), Steps still hands out a copy the caller may change, and StepAt
// refuses indexes outside the list.
func TestFrozenStepsAreReadWithoutACopy(t *testing.T) {
	def := placeOrder()
	frozen := workflows.Freeze(def)
	steps := frozen.Steps()
	if !reflect.DeepEqual(steps, def.Steps()) || len(steps) < 2 {
		t.Fatalf("frozen steps = %+v; want the definition's %+v", steps, def.Steps())
	}
	steps[0].Name = "changed by the caller"
	if s, ok := workflows.StepAt(frozen, 0); !ok || s.Name != def.Steps()[0].Name {
		t.Fatalf("StepAt(0) after a caller changed its copy = %q, %t; want %q", s.Name, ok, def.Steps()[0].Name)
	}
	for _, i := range []int{-1, len(steps)} {
		if _, ok := workflows.StepAt(frozen, i); ok {
			t.Errorf("StepAt(%d) ok; want false for a list of %d", i, len(steps))
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = workflows.StepAt(frozen, 1) }); n != 0 {
		t.Errorf("StepAt on a frozen workflow allocates %.0f times; want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = workflows.StepAt(def, 1) }); n == 0 {
		t.Errorf("StepAt on a definition allocates nothing; the test cannot tell a frozen list from a copy")
	}
}
