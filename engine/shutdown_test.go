package engine_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/workflows"
)

// gateWorkflow has one local step that signals started and then waits for
// release or its context.
func gateWorkflow(started chan<- struct{}, release <-chan struct{}, runs *atomic.Int32) workflows.Workflow {
	type in struct{}
	type st struct{}
	return workflows.New("gated", 1, func(in) (st, error) { return st{}, nil }).
		Do("wait", workflows.LocalStep[st]{Run: func(ctx context.Context, _ *st) error {
			runs.Add(1)
			select {
			case started <- struct{}{}:
			default:
			}
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}})
}

func TestGracefulStop(t *testing.T) {
	cases := []struct {
		name        string
		timeout     time.Duration
		releaseLate bool // release the step only after the shutdown timeout
		wantRuns    int32
	}{
		{"in-flight step finishes and is committed", 10 * time.Second, false, 1},
		{"a step past the deadline is abandoned and runs again after restart", 300 * time.Millisecond, true, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			started := make(chan struct{}, 1)
			release := make(chan struct{})
			var runs atomic.Int32
			e := engine.New(engine.Options{DataDir: dir, AdminAddr: "127.0.0.1:0", ShutdownTimeout: c.timeout, Logger: quietLogger()}).
				Register(gateWorkflow(started, release, &runs))
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- e.Run(ctx) }()
			<-e.Ready()
			id, err := e.StartSaga(ctx, engine.StartRequest{Workflow: "gated", Input: json.RawMessage(`{}`)})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-started:
			case <-time.After(10 * time.Second):
				t.Fatal("step did not start")
			}
			stop()
			// While draining, the admin API is up and refuses new work.
			var st int
			deadline := time.Now().Add(5 * time.Second)
			for st != http.StatusServiceUnavailable && time.Now().Before(deadline) {
				st, _ = call(t, e, "POST", "/v1/sagas", engine.StartRequest{Workflow: "gated"}, nil, nil)
			}
			if st != http.StatusServiceUnavailable && !c.releaseLate {
				t.Errorf("start while stopping = %d, want 503", st)
			}
			stopStart := time.Now()
			if !c.releaseLate {
				close(release)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(c.timeout + 10*time.Second):
				t.Fatal("Run did not return")
			}
			if c.releaseLate {
				if took := time.Since(stopStart); took > c.timeout+3*time.Second {
					t.Errorf("stop took %v with a %v shutdown timeout", took, c.timeout)
				}
				close(release)
			}

			// A new engine on the same store finds the saga where the
			// first left it.
			e2 := engine.New(engine.Options{DataDir: dir, AdminAddr: "127.0.0.1:0", Logger: quietLogger()}).
				Register(gateWorkflow(started, release, &runs))
			runEngine(t, e2)
			if s := waitSaga(t, e2, id); s.Status != workflows.StatusCompleted {
				t.Fatalf("after restart: %s, want completed", s.Status)
			}
			if got := runs.Load(); got != c.wantRuns {
				t.Errorf("step ran %d times, want %d", got, c.wantRuns)
			}
		})
	}
}
