package workflows_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sagaflow/sagaflow/workflows"
)

func TestMermaidDrawsStepsAndTheCompensationChain(t *testing.T) {
	cases := []struct {
		name string
		wf   workflows.Workflow
		want string
	}{
		{
			name: "order saga",
			wf:   placeOrder().Send("ship-order", shipStep()).Do("award-points", pointsStep()),
			want: `flowchart TD
    start(["start<br/>orders.PlaceOrder v1"])
    s1["reserve-stock<br/>command: inventory"]
    s2["charge-payment<br/>command: payments"]
    s3["ship-order<br/>command: shipping"]
    s4["award-points<br/>local"]
    completed(["completed"])
    start --> s1
    s1 --> s2
    s2 --> s3
    s3 --> s4
    s4 --> completed
    c1["undo reserve-stock"]
    c2["undo charge-payment"]
    compensated(["compensated"])
    s1 -.-> c1
    s2 -.-> c2
    c2 --> c1
    c1 --> compensated
`,
		},
		{
			name: "compensable steps with a gap",
			wf: workflows.New("x.Y", 3, initOrder).
				Send("a", reserveStep()).
				Send("b", shipStep()).
				Send("c", compensable(shipStep())).
				Do("d", workflows.LocalStep[orderState]{Run: pointsStep().Run, Compensate: pointsStep().Run}),
			want: `flowchart TD
    start(["start<br/>x.Y v3"])
    s1["a<br/>command: inventory"]
    s2["b<br/>command: shipping"]
    s3["c<br/>command: shipping"]
    s4["d<br/>local"]
    completed(["completed"])
    start --> s1
    s1 --> s2
    s2 --> s3
    s3 --> s4
    s4 --> completed
    c1["undo a"]
    c3["undo c"]
    c4["undo d"]
    compensated(["compensated"])
    s1 -.-> c1
    s3 -.-> c3
    s4 -.-> c4
    c4 --> c3
    c3 --> c1
    c1 --> compensated
`,
		},
		{
			name: "nothing to compensate",
			wf:   workflows.New("x.Y", 1, initOrder).Do("only", pointsStep()),
			want: `flowchart TD
    start(["start<br/>x.Y v1"])
    s1["only<br/>local"]
    completed(["completed"])
    start --> s1
    s1 --> completed
`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := workflows.Mermaid(c.wf); got != c.want {
				t.Errorf("Mermaid:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

var (
	mermaidNode = regexp.MustCompile(`^    ([a-z][a-z0-9]*)(\[|\(\[)"([^"]*)"(\]|\]\))$`)
	mermaidEdge = regexp.MustCompile(`^    ([a-z][a-z0-9]*) (-->|-\.->) ([a-z][a-z0-9]*)$`)
	unescape    = strings.NewReplacer("#quot;", `"`, "#lt;", "<", "#gt;", ">", "#amp;", "&", "#96;", "`", "#35;", "#")
)

func TestMermaidNodeIDsAreSafeForOddStepNames(t *testing.T) {
	odd := []string{
		`say "hi"`, "with spaces", "dash-and--double-dash", "a-->b", "end", "x -.-> y",
		"[brackets]", "(parens)", "{braces}", "a|b", "semi;colon", "<b>bold</b>", "a & b",
		"#quot;", "back`tick", "line\nbreak", "ünïcødé", "%%comment",
	}
	d := workflows.New(`wf "quoted" <x>`, 1, initOrder)
	for i, name := range odd {
		if i%2 == 0 {
			d.Send(name, reserveStep())
		} else {
			d.Do(name, pointsStep())
		}
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	out := workflows.Mermaid(d)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if lines[0] != "flowchart TD" {
		t.Fatalf("first line %q", lines[0])
	}
	defined := map[string]string{}
	var edges [][2]string
	for _, l := range lines[1:] {
		if m := mermaidNode.FindStringSubmatch(l); m != nil {
			if _, dup := defined[m[1]]; dup {
				t.Errorf("node %s defined twice", m[1])
			}
			defined[m[1]] = m[3]
			if strings.ContainsAny(strings.ReplaceAll(m[3], "<br/>", ""), "<>\"`\n") {
				t.Errorf("label of %s is not escaped: %q", m[1], m[3])
			}
			continue
		}
		if m := mermaidEdge.FindStringSubmatch(l); m != nil {
			edges = append(edges, [2]string{m[1], m[3]})
			continue
		}
		t.Errorf("line is neither a node nor an edge: %q", l)
	}
	for _, e := range edges {
		for _, id := range e {
			if _, ok := defined[id]; !ok {
				t.Errorf("edge %s -> %s uses undefined node %s", e[0], e[1], id)
			}
		}
	}
	// Every step's name comes back from its label.
	for i, name := range odd {
		label := defined["s"+strconv.Itoa(i+1)]
		shown, _, _ := strings.Cut(label, "<br/>")
		if want := strings.ReplaceAll(name, "\n", " "); unescape.Replace(shown) != want {
			t.Errorf("step %d %q is shown as %q", i+1, name, shown)
		}
	}
	if want := 1 + len(odd) + 1 + (len(odd)+1)/2 + 1; len(defined) != want {
		t.Errorf("%d nodes, want %d (start, steps, completed, compensations, compensated)", len(defined), want)
	}
}
