package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/engine"
)

type setEmail struct {
	Email string `json:"email"`
}

type emailSet struct {
	Email string `json:"email" sagaflow:"personal"`
}

type profile struct {
	Email   string `json:"email"`
	Changes int    `json:"changes"`
}

func profiles() *aggregate.Definition[profile] {
	d := aggregate.New("profiles", "crm.Profile", func(string) profile { return profile{} })
	aggregate.Handle(d, func(s profile, c *setEmail) ([]any, error) { return []any{emailSet{Email: c.Email}}, nil })
	aggregate.Apply(d, func(s profile, e *emailSet) profile { s.Email = e.Email; s.Changes++; return s })
	return d.SnapshotEvery(1)
}

// TestAggregateAndSubjectCommands runs `aggregate get` (table, --json,
// --version, --at) and `subject forget` against a served engine.
func TestAggregateAndSubjectCommands(t *testing.T) {
	addr := freeAddr(t)
	var eng *engine.Engine
	setup := func(e *engine.Engine) {
		eng = e
		e.Register(engine.Message[setEmail]("crm.SetEmail.v1"), engine.Message[emailSet]("crm.EmailSet.v1"), profiles())
	}
	ctx, stop := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- MainIO(ctx, []string{"sagaflow", "serve", "--data-dir", t.TempDir(), "--admin-addr", addr, "--log-level", "warn"}, setup, &out, &errOut)
	}()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop within 15s")
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "running") {
		if time.Now().After(deadline) {
			t.Fatalf("serve not running: %s %s", out.String(), errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	a := []string{"--addr", addr}
	// Two commits: the first email, then a second one.
	var at1 string
	for i, email := range []string{"first@example.org", "second@example.org"} {
		if _, err := eng.Send(context.Background(), "profiles", "p-1", &setEmail{Email: email}, nil); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			v, err := eng.AggregateStateAt(context.Background(), "profiles", "p-1", engine.AggregateAt{})
			if err == nil && v.Version == uint64(i+1) {
				if i == 0 {
					at1 = v.At.Format(time.RFC3339Nano)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("profile not at version %d: %v", i+1, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(3 * time.Millisecond)
	}

	so, _ := runCLI(t, append([]string{"aggregate", "get", "profiles", "p-1"}, a...)...)
	for _, want := range []string{"crm.Profile p-1", "version 2 of 2", "FIELD", "email", `"second@example.org"`, "changes"} {
		if !strings.Contains(so, want) {
			t.Errorf("aggregate get table lacks %q:\n%s", want, so)
		}
	}
	so, _ = runCLI(t, append([]string{"aggregate", "get", "profiles", "p-1", "--version", "1", "--json"}, a...)...)
	var view struct {
		Version uint64  `json:"version"`
		Latest  uint64  `json:"latest"`
		State   profile `json:"state"`
	}
	if err := json.Unmarshal([]byte(so), &view); err != nil || view.Version != 1 || view.Latest != 2 || view.State.Email != "first@example.org" {
		t.Errorf("aggregate get --version 1 --json = %s (%v)", so, err)
	}
	so, _ = runCLI(t, append([]string{"aggregate", "get", "profiles", "p-1", "--at", at1, "--json"}, a...)...)
	if err := json.Unmarshal([]byte(so), &view); err != nil || view.Version != 1 {
		t.Errorf("aggregate get --at %s --json = %s (%v)", at1, so, err)
	}

	so, _ = runCLI(t, append([]string{"subject", "forget", "p-1"}, a...)...)
	if strings.TrimSpace(so) != "forgotten p-1" {
		t.Errorf("subject forget = %q", so)
	}
	so, _ = runCLI(t, append([]string{"aggregate", "get", "profiles", "p-1", "--json"}, a...)...)
	if err := json.Unmarshal([]byte(so), &view); err != nil || view.State.Email != "[redacted]" || view.State.Changes != 2 {
		t.Errorf("aggregate get after forget = %s (%v), want the email redacted and 2 changes", so, err)
	}

	for _, c := range []struct {
		args    []string
		mention string
	}{
		{[]string{"aggregate", "get", "profiles"}, "two arguments"},
		{[]string{"aggregate", "get", "profiles", "p-1", "--version", "1", "--at", at1}, "not both"},
		{[]string{"aggregate", "get", "profiles", "p-1", "--at", "noon"}, "RFC 3339"},
		{[]string{"aggregate", "get", "profiles", "p-1", "--version", "0"}, "from 1"},
		{[]string{"aggregate", "get", "profiles", "p-9"}, "404"},
		{[]string{"aggregate", "get", "profiles", "p-1", "--version", "7"}, "no version 7"},
		{[]string{"subject", "forget"}, "one argument, the subject"},
	} {
		var o, e bytes.Buffer
		if code := MainIO(context.Background(), append(append([]string{"sagaflow"}, c.args...), a...), nil, &o, &e); code == 0 || !strings.Contains(e.String(), c.mention) {
			t.Errorf("%v: exit %d, stderr %q; want failure mentioning %q", c.args, code, e.String(), c.mention)
		}
	}
}
