package console

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sagaflow/sagaflow/workflows"
)

// Mermaid class definitions the console adds to a workflow's diagram. The
// node IDs are those workflows.Mermaid generates: s1..sN for the steps,
// c1..cN for their compensations, and start, completed, compensated.
const diagramClasses = `    classDef done fill:#dcfce7,stroke:#16a34a,color:#14532d
    classDef failed fill:#fee2e2,stroke:#dc2626,color:#7f1d1d
    classDef comp fill:#ede9fe,stroke:#7c3aed,color:#4c1d95
    classDef current fill:#fef3c7,stroke:#d97706,stroke-width:3px,color:#78350f
`

// Diagram renders wf as Mermaid text with the saga's progress drawn on it:
// steps that succeeded in green, the step that failed in red, compensations
// that ran in purple, and the current step (or compensation, or the end
// the saga reached) highlighted in amber. history is the saga's history; status and
// step (its name, "" when finished) come from the saga's view.
func Diagram(wf workflows.Workflow, status workflows.Status, step string, history []workflows.Record) string {
	steps := wf.Steps()
	index := func(name string) int {
		return slices.IndexFunc(steps, func(s workflows.StepInfo) bool { return s.Name == name })
	}
	classes := map[string]string{} // node ID -> class; the last word wins
	for _, r := range history {
		i := index(r.Step)
		if i < 0 {
			continue
		}
		switch r.Event {
		case workflows.EventStepSucceeded:
			classes[stepNode(i)] = "done"
		case workflows.EventStepFailed:
			classes[stepNode(i)] = "failed"
		case workflows.EventCompensationSucceeded:
			classes[compNode(i)] = "comp"
		case workflows.EventNeedsAttention:
			if steps[i].Compensable {
				classes[compNode(i)] = "failed"
			}
		}
	}
	switch status {
	case workflows.StatusCompleted:
		classes["completed"] = "current"
	case workflows.StatusCompensated, workflows.StatusCancelled:
		if hasCompensation(steps) {
			classes["compensated"] = "current"
		}
	case workflows.StatusRunning:
		if i := index(step); i >= 0 {
			classes[stepNode(i)] = "current"
		}
	case workflows.StatusCompensating:
		if i := index(step); i >= 0 && steps[i].Compensable {
			classes[compNode(i)] = "current"
		}
	}

	var b strings.Builder
	b.WriteString(workflows.Mermaid(wf))
	b.WriteString(diagramClasses)
	nodes := make([]string, 0, len(classes))
	for n := range classes {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, n := range nodes {
		fmt.Fprintf(&b, "    class %s %s\n", n, classes[n])
	}
	return b.String()
}

func stepNode(i int) string { return fmt.Sprintf("s%d", i+1) }
func compNode(i int) string { return fmt.Sprintf("c%d", i+1) }

func hasCompensation(steps []workflows.StepInfo) bool {
	return slices.ContainsFunc(steps, func(s workflows.StepInfo) bool { return s.Compensable })
}
