package daemon

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestDemoRunsEverySagaToItsOutcome(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code := MainIO(ctx, []string{"sagaflow", "demo", "--data-dir", t.TempDir()}, nil, &out, &errOut)
	if code != 0 {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	text := out.String()
	for _, want := range []string{
		"saga ", ": completed",
		": compensated", "payment declined",
		"carrier unavailable", "compensation.succeeded",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	if got := strings.Count(text, ": compensated"); got != 2 {
		t.Errorf("%d compensated sagas in the output, want 2:\n%s", got, text)
	}
}

func TestBadArgumentsExplainThemselves(t *testing.T) {
	cases := []struct {
		args    []string
		mention string
	}{
		{[]string{"sagaflow", "start"}, "one argument, the workflow name"},
		{[]string{"sagaflow", "start", "x", "--input", "{nope"}, "--input is not valid JSON"},
		{[]string{"sagaflow", "get"}, "one argument, the saga ID"},
		{[]string{"sagaflow", "serve", "--log-level", "loud"}, `log level "loud"`},
		{[]string{"sagaflow", "serve", "--partitions", "-1", "--admin-addr", "off", "--data-dir", "DATA"}, "partitions -1"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args[1:], " "), func(t *testing.T) {
			for i, a := range c.args {
				if a == "DATA" {
					c.args[i] = t.TempDir()
				}
			}
			var out, errOut bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if code := MainIO(ctx, c.args, nil, &out, &errOut); code == 0 {
				t.Fatalf("exit 0, want failure")
			}
			if !strings.Contains(errOut.String(), c.mention) {
				t.Errorf("stderr %q does not mention %q", errOut.String(), c.mention)
			}
		})
	}
}
