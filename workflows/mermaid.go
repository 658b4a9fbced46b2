package workflows

import (
	"fmt"
	"strings"
)

// Mermaid renders wf as a Mermaid "flowchart TD" diagram: start (labelled
// with the workflow's name and version), each step (labelled with its
// name, kind and what it talks to or waits for), completed. A conditional
// step is a decision with a "then" and an "else" edge; a parallel step
// forks to its branches, which meet again in a join node. Every
// compensable step has a dashed edge to its compensation node; the
// compensation nodes are chained in reverse step order and end in
// "compensated", the order in which a failed saga undoes its work (of a
// conditional, only the steps of the branch taken are undone).
//
// Node IDs are generated (s1, s2, ... for steps, j1, ... for joins, c1,
// c2, ... for compensations), never taken from step names, so any name
// renders safely; names appear only inside quoted labels, escaped.
func Mermaid(wf Workflow) string {
	steps := wf.Steps()
	var b strings.Builder
	line := func(format string, args ...any) {
		b.WriteString("    ")
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	b.WriteString("flowchart TD\n")
	label := fmt.Sprintf("start<br/>%s v%d", mermaidText(wf.Name()), wf.Version())
	if d := wf.DeadlineAfter(); d > 0 {
		label += fmt.Sprintf("<br/>deadline %v", d)
	}
	line("start([\"%s\"])", label)
	for i, s := range steps {
		switch s.Kind {
		case KindIf:
			line("s%d{\"%s<br/>if\"}", i+1, mermaidText(s.Name))
		case KindParallel:
			line("s%d[[\"%s<br/>parallel: %s\"]]", i+1, mermaidText(s.Name), s.Mode)
			line("j%d{{\"join %s\"}}", i+1, mermaidText(s.Name))
		default:
			line("s%d[\"%s\"]", i+1, stepLabel(s))
		}
	}
	line("completed([\"completed\"])")
	node := func(i int) string {
		if i < 0 || i >= len(steps) {
			return "completed"
		}
		return fmt.Sprintf("s%d", i+1)
	}
	line("start --> %s", node(0))
	for i, s := range steps {
		switch {
		case s.Next < 0:
			// a parallel branch's last step: drawn from its parallel step
		case s.Kind == KindIf:
			line("s%d -->|then| %s", i+1, node(s.Then))
			line("s%d -->|else| %s", i+1, node(s.Else))
		case s.Kind == KindParallel:
			for k := range s.BranchCount {
				line("s%d --> s%d", i+1, s.BranchFrom+k+1)
				last := s.BranchFrom + k
				for n := 0; steps[last].Next >= 0 && n < len(steps); n++ {
					last = steps[last].Next // a branch's sequence: drawn step by step
				}
				line("s%d --> j%d", last+1, i+1)
			}
			line("j%d --> %s", i+1, node(s.Next))
		default:
			line("s%d --> %s", i+1, node(s.Next))
		}
	}

	var comp []int
	for i, s := range steps {
		if s.Compensable {
			comp = append(comp, i)
		}
	}
	if len(comp) == 0 {
		return b.String()
	}
	for _, i := range comp {
		line("c%d[\"undo %s\"]", i+1, mermaidText(steps[i].Name))
	}
	line("compensated([\"compensated\"])")
	for _, i := range comp {
		line("s%d -.-> c%d", i+1, i+1)
	}
	for k := len(comp) - 1; k > 0; k-- {
		line("c%d --> c%d", comp[k]+1, comp[k-1]+1)
	}
	line("c%d --> compensated", comp[0]+1)
	return b.String()
}

// stepLabel is a step node's label: its name, kind and target.
func stepLabel(s StepInfo) string {
	label := mermaidText(s.Name) + "<br/>" + string(s.Kind)
	switch s.Kind {
	case KindCommand:
		if s.Service != "" {
			label += ": " + mermaidText(s.Service)
		}
	case KindSignal:
		label += ": " + mermaidText(s.Signal)
	case KindEvent:
		label += ": " + mermaidText(s.Event)
	case KindChild:
		label += ": " + mermaidText(s.Workflow)
	case KindDelay:
		label = mermaidText(s.Name) + "<br/>delay " + s.Delay.String()
	}
	if s.Timeout > 0 && (s.Kind == KindSignal || s.Kind == KindEvent) {
		label += "<br/>timeout " + s.Timeout.String()
	}
	return label
}

// mermaidText escapes s for a double-quoted Mermaid label: quotes, markup
// and the entity character become Mermaid entity codes, line breaks spaces.
var mermaidText = strings.NewReplacer(
	"#", "#35;",
	`"`, "#quot;",
	"<", "#lt;",
	">", "#gt;",
	"&", "#amp;",
	"`", "#96;",
	"\r\n", " ",
	"\n", " ",
	"\r", " ",
).Replace
