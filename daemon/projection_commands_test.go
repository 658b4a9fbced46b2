package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/customers"
	"github.com/sagaflow/sagaflow/projection"
)

// `sagaflow projections list|status|rebuild` against a served engine:
// the rebuild shows its progress on stderr and ends with every stream.
func TestProjectionCommands(t *testing.T) {
	const token = "test-token-projections"
	t.Setenv(AdminTokenEnv, token)
	t.Setenv("SAGAFLOW_MONGO_URI", "") // the embedded store in a fresh directory, whatever the environment says
	addr := freeAddr(t)
	var eng *engine.Engine
	ready := make(chan struct{})
	setup := func(e *engine.Engine) {
		eng = e
		customers.Setup(e)
		close(ready)
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
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d: %s", code, errOut.String())
			}
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
	})
	<-ready
	select {
	case <-eng.Ready():
	case code := <-done:
		t.Fatalf("serve exited %d: %s", code, errOut.String())
	case <-time.After(15 * time.Second):
		t.Fatal("engine not ready")
	}
	const n = 40
	var last engine.CommandResult
	for i := range n {
		cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		key := fmt.Sprintf("c-%02d", i)
		if _, err := eng.Execute(cctx, customers.Service, key, &customers.Register{Name: key}); err != nil {
			t.Fatal(err)
		}
		res, err := eng.Execute(cctx, customers.Service, key, &customers.Classify{Class: "B"})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		last = res
	}
	if err := eng.WaitForReadModel(context.Background(), customers.ByClass, last.Stream, last.Sequence, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	a := []string{"--addr", addr}

	so, _ := runCLI(t, append([]string{"projections", "list"}, a...)...)
	for _, want := range []string{"NAME", customers.ByID, customers.ByClass, "running", "2 projections"} {
		if !strings.Contains(so, want) {
			t.Errorf("projections list lacks %q:\n%s", want, so)
		}
	}
	so, se := runCLI(t, append([]string{"projections", "rebuild", customers.ByClass}, a...)...)
	if !strings.Contains(se, fmt.Sprintf("rebuilding %s: %d/%d streams", customers.ByClass, n, n)) || !strings.Contains(so, fmt.Sprintf("%d streams, %d events", n, 2*n)) {
		t.Fatalf("rebuild output:\nstdout: %s\nstderr: %s", so, se)
	}
	so, _ = runCLI(t, append([]string{"projections", "status", customers.ByClass, "--json"}, a...)...)
	var st projection.Status
	if err := json.Unmarshal([]byte(so), &st); err != nil || st.Rebuild == nil || st.Rebuild.Done != n || st.Rebuild.Running {
		t.Fatalf("status --json: %s (%v)", so, err)
	}
	d, err := eng.ReadModel(context.Background(), customers.ByClass, "B")
	if err != nil || strings.Count(string(d.Body), `"c-`) != n {
		t.Fatalf("class B after rebuild: %s %v, want %d customers", d.Body, err, n)
	}
	// Unknown projection: a clear error and a failing exit.
	var o2, e2 syncBuffer
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if code := MainIO(cctx, append([]string{"sagaflow", "projections", "rebuild", "nosuch"}, a...), nil, &o2, &e2); code == 0 || !strings.Contains(e2.String(), "unknown projection") {
		t.Fatalf("rebuild nosuch: exit %d, stderr %q", code, e2.String())
	}
}
