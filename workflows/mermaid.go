package workflows

import (
	"fmt"
	"strings"
)

// Mermaid renders wf as a Mermaid "flowchart TD" diagram: start (labelled
// with the workflow's name and version), each step
// in order (labelled with its name, kind and, for a command, its service),
// completed. Every compensable step has a dashed edge to its compensation
// node; the compensation nodes are chained in reverse step order and end in
// "compensated", the order in which a failed saga undoes its work.
//
// Node IDs are generated (s1, s2, ... for steps, c1, c2, ... for their
// compensations), never taken from step names, so any name renders safely;
// names appear only inside quoted labels, escaped.
func Mermaid(wf Workflow) string {
	steps := wf.Steps()
	var b strings.Builder
	line := func(format string, args ...any) {
		b.WriteString("    ")
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	b.WriteString("flowchart TD\n")
	line("start([\"start<br/>%s v%d\"])", mermaidText(wf.Name()), wf.Version())
	for i, s := range steps {
		label := mermaidText(s.Name) + "<br/>" + string(s.Kind)
		if s.Kind == KindCommand && s.Service != "" {
			label += ": " + mermaidText(s.Service)
		}
		line("s%d[\"%s\"]", i+1, label)
	}
	line("completed([\"completed\"])")
	prev := "start"
	for i := range steps {
		line("%s --> s%d", prev, i+1)
		prev = fmt.Sprintf("s%d", i+1)
	}
	line("%s --> completed", prev)

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
