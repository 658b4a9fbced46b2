package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/client"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/workflows"
)

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// syncBuffer is a bytes.Buffer safe for the daemon's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cli runs one client subcommand against addr and returns its output.
func runCLI(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if code := MainIO(ctx, append([]string{"sagaflow"}, args...), nil, &out, &errOut); code != 0 {
		t.Fatalf("sagaflow %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

func TestServeAndEveryClientCommand(t *testing.T) {
	const token = "test-token-0123456789"
	t.Setenv(AdminTokenEnv, token)
	addr, pprofAddr := freeAddr(t), freeAddr(t)
	var eng *engine.Engine
	setup := func(e *engine.Engine) {
		eng = e
		orders.Register(e, workflows.RetryPolicy{MaxAttempts: 2, InitialInterval: 10 * time.Millisecond})
	}
	ctx, stop := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- MainIO(ctx, []string{"sagaflow", "serve", "--data-dir", t.TempDir(), "--admin-addr", addr, "--pprof-addr", pprofAddr, "--log-level", "warn"}, setup, &out, &errOut)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "running") {
		select {
		case code := <-done:
			t.Fatalf("serve exited %d: %s %s", code, out.String(), errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not running: %s %s", out.String(), errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	a := []string{"--addr", addr}

	// Without the token the API refuses.
	if _, err := client.New(addr).Workflows(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("call without token: %v, want 401", err)
	}

	input := `{"order_id":"o-cli","sku":"book","qty":1,"amount":30,"address":"1 Main St"}`
	so, _ := runCLI(t, append([]string{"start", orders.WorkflowName, "--input", input, "--idempotency-key", "k1", "--correlation-id", "o-cli"}, a...)...)
	if !strings.Contains(so, ": completed") {
		t.Fatalf("start --wait: %s", so)
	}
	id := strings.Fields(so)[1]
	so, _ = runCLI(t, append([]string{"start", orders.WorkflowName, "--input", input, "--idempotency-key", "k1", "--wait=false"}, a...)...)
	if strings.TrimSpace(so) != id {
		t.Errorf("same idempotency key started %q, want %s", so, id)
	}
	so, _ = runCLI(t, append([]string{"list", "--correlation-id", "o-cli", "--json"}, a...)...)
	var list engine.ListResponse
	if err := json.Unmarshal([]byte(so), &list); err != nil || len(list.Sagas) != 1 || list.Sagas[0].ID != id {
		t.Errorf("list --json: %s (%v)", so, err)
	}
	so, _ = runCLI(t, append([]string{"list", "--status", "completed"}, a...)...)
	if !strings.Contains(so, "CORRELATION") || !strings.Contains(so, id) {
		t.Errorf("list table: %s", so)
	}
	so, _ = runCLI(t, append([]string{"history", id}, a...)...)
	for _, want := range []string{"EVENT", workflows.EventStepStarted, workflows.EventCompleted} {
		if !strings.Contains(so, want) {
			t.Errorf("history lacks %q: %s", want, so)
		}
	}
	// Operator calls on a finished saga explain why they cannot act.
	for _, c := range []struct {
		args    []string
		mention string
	}{
		{[]string{"signal", id, "approved", "--json"}, "409"},
		{[]string{"retry", id}, "does not need attention"},
		{[]string{"cancel", id, "--json"}, "already finished"},
	} {
		var o, e bytes.Buffer
		if code := MainIO(context.Background(), append(append([]string{"sagaflow"}, c.args...), a...), nil, &o, &e); code == 0 || !strings.Contains(e.String(), c.mention) {
			t.Errorf("%v: exit %d, stderr %q; want a failure mentioning %q", c.args, code, e.String(), c.mention)
		}
	}
	so, _ = runCLI(t, append([]string{"workflows", "show", orders.WorkflowName, "--mermaid"}, a...)...)
	if !strings.HasPrefix(so, "flowchart") {
		t.Errorf("workflows show --mermaid: %s", so)
	}
	so, _ = runCLI(t, append([]string{"workflows", "list"}, a...)...)
	if !strings.Contains(so, orders.WorkflowName) {
		t.Errorf("workflows list: %s", so)
	}

	// Dead letters: commands for sagas that do not exist, replayed in
	// batches with progress.
	const n = 120
	for i := range n {
		if _, err := eng.Send(context.Background(), "sagaflow", fmt.Sprintf("no-saga-%d", i), &orders.RefundPayment{OrderID: "x"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	var dls string
	for deadline := time.Now().Add(10 * time.Second); ; {
		dls, _ = runCLI(t, append([]string{"dead-letters", "list", "--limit", "1000"}, a...)...)
		if strings.Contains(dls, fmt.Sprintf("%d dead letters", n)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(dls, fmt.Sprintf("%d dead letters", n)) {
		t.Fatalf("dead-letters list: %s", dls)
	}
	firstID := strings.Fields(strings.Split(dls, "\n")[1])[0]
	so, _ = runCLI(t, append([]string{"dead-letters", "show", firstID}, a...)...)
	if !strings.Contains(so, "payments.RefundPayment.v1") || !strings.Contains(so, "payload:") {
		t.Errorf("dead-letters show: %s", so)
	}
	so, se := runCLI(t, append([]string{"dead-letters", "replay", "--all", "--queue", "sagaflow"}, a...)...)
	for _, want := range []string{"replay: 50/120", "replay: 100/120", "replay: 120/120"} {
		if !strings.Contains(se, want) {
			t.Errorf("replay progress lacks %q: %s", want, se)
		}
	}
	if !strings.Contains(so, "120 done, 0 not found") {
		t.Errorf("replay summary: %s", so)
	}
	// The replayed letters are handled again (their sagas still do not
	// exist) and come back to the dead-letter queue: wait for them, or the
	// discard may find firstID in flight.
	for deadline := time.Now().Add(10 * time.Second); ; {
		dls, _ = runCLI(t, append([]string{"dead-letters", "list", "--limit", "1000"}, a...)...)
		if strings.Contains(dls, fmt.Sprintf("%d dead letters", n)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	so, _ = runCLI(t, append([]string{"dead-letters", "discard", firstID, "no-such-id", "--json"}, a...)...)
	var res engine.DeadLetterResult
	if err := json.Unmarshal([]byte(so), &res); err != nil || len(res.Missing) != 1 || res.Missing[0] != "no-such-id" {
		t.Errorf("discard --json: %s (%v)", so, err)
	}

	// pprof answers on its own address.
	resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("pprof: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	stop()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d: %s", code, errOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	if !strings.Contains(out.String(), "sagaflow engine stopped") {
		t.Errorf("serve output lacks the stop: %s", out.String())
	}
}

func TestClientCommandsExplainBadUse(t *testing.T) {
	for _, c := range []struct {
		args    []string
		mention string
	}{
		{[]string{"history"}, "one argument, the saga ID"},
		{[]string{"signal", "x"}, "two arguments"},
		{[]string{"signal", "x", "y", "--payload", "{"}, "--payload is not valid JSON"},
		{[]string{"dead-letters", "replay"}, "give the message IDs"},
		{[]string{"dead-letters", "replay", "a", "--all"}, "not both"},
		{[]string{"dead-letters", "discard", "a", "--queue", "q"}, "--all only"},
		{[]string{"workflows", "show"}, "one argument, the workflow name"},
	} {
		var out, errOut bytes.Buffer
		if code := MainIO(context.Background(), append([]string{"sagaflow"}, c.args...), nil, &out, &errOut); code == 0 {
			t.Errorf("%v: exit 0", c.args)
		}
		if !strings.Contains(errOut.String(), c.mention) {
			t.Errorf("%v: stderr %q does not mention %q", c.args, errOut.String(), c.mention)
		}
	}
}

// childEnv makes the test binary run `sagaflow serve` (TestServeChild)
// with the arguments in it, separated by spaces.
const childEnv = "SAGAFLOW_TEST_SERVE_CHILD"

// TestServeChild is the daemon run by TestSignals in a child process; its
// workflow "stuck" has a step that ignores cancellation for a minute.
func TestServeChild(t *testing.T) {
	args := os.Getenv(childEnv)
	if args == "" {
		t.Skip("runs only as a child of TestSignals")
	}
	setup := func(e *engine.Engine) {
		type in struct{}
		type st struct{}
		e.Register(workflows.New("stuck", 1, func(in) (st, error) { return st{}, nil }).
			Do("hang", workflows.LocalStep[st]{Run: func(context.Context, *st) error { time.Sleep(time.Minute); return nil }}))
	}
	os.Exit(MainIO(context.Background(), append([]string{"sagaflow"}, strings.Fields(args)...), setup, os.Stdout, os.Stderr))
}

func TestSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	start := func(t *testing.T, addr string) (*exec.Cmd, *syncBuffer, chan error) {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestServeChild$")
		cmd.Env = append(os.Environ(), childEnv+"=serve --data-dir "+t.TempDir()+" --admin-addr "+addr+" --shutdown-timeout 1m")
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(out.String(), "running") {
			if time.Now().After(deadline) {
				t.Fatalf("child not running: %s", out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		return cmd, out, exited
	}
	exitCode := func(err error) int {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		return 0
	}

	t.Run("one signal stops gracefully", func(t *testing.T) {
		cmd, out, exited := start(t, freeAddr(t))
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			if code := exitCode(err); code != 0 {
				t.Fatalf("exit %d: %s", code, out.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no exit after SIGTERM: %s", out.String())
		}
		for _, want := range []string{"stopping gracefully", "sagaflow engine stopped"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q: %s", want, out.String())
			}
		}
	})

	t.Run("a second signal exits at once", func(t *testing.T) {
		addr := freeAddr(t)
		cmd, out, exited := start(t, addr)
		if _, err := client.New(addr).Start(context.Background(), engine.StartRequest{Workflow: "stuck", Input: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // the step is running
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		// Draining: the step holds the stop for up to a minute, and the
		// admin API refuses new work meanwhile.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), "stopping gracefully") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		_, err := client.New(addr).Start(context.Background(), engine.StartRequest{Workflow: "stuck", Input: json.RawMessage(`{}`)})
		var apiErr *client.Error
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable {
			t.Errorf("start while draining: %v, want 503", err)
		}
		select {
		case err := <-exited:
			t.Fatalf("exited (%v) during the drain: %s", err, out.String())
		case <-time.After(300 * time.Millisecond):
		}
		sent := time.Now()
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			if code := exitCode(err); code != ExitSecondSignal {
				t.Errorf("exit %d, want %d: %s", code, ExitSecondSignal, out.String())
			}
			if took := time.Since(sent); took > 5*time.Second {
				t.Errorf("second signal took %v to exit", took)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no exit after the second signal: %s", out.String())
		}
		if !strings.Contains(out.String(), "second signal") {
			t.Errorf("output lacks the second-signal notice: %s", out.String())
		}
	})
}
