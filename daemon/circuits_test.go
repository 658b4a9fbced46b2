package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/workflows"
)

func TestCircuitSettingsFromFlagEnvFileDefault(t *testing.T) {
	defaults := engine.CircuitSettings{Failures: 10, OpenFor: 30 * time.Second, Probes: 1}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		file string
		want engine.CircuitSettings
	}{
		{"defaults are the engine's", nil, nil, "", defaults},
		{"flags", []string{"--circuit-failures", "3", "--circuit-open-for", "2m", "--circuit-probes", "2"}, nil, "",
			engine.CircuitSettings{Failures: 3, OpenFor: 2 * time.Minute, Probes: 2}},
		{"environment", nil, map[string]string{"SAGAFLOW_CIRCUIT_FAILURES": "5", "SAGAFLOW_CIRCUIT_OPEN_FOR": "1s", "SAGAFLOW_CIRCUIT_PROBES": "4"}, "",
			engine.CircuitSettings{Failures: 5, OpenFor: time.Second, Probes: 4}},
		{"config file", nil, nil, "circuit-failures: 7\ncircuit-open-for: 90s\ncircuit-probes: 3\n",
			engine.CircuitSettings{Failures: 7, OpenFor: 90 * time.Second, Probes: 3}},
		{"flag over env over file", []string{"--circuit-failures", "2"}, map[string]string{"SAGAFLOW_CIRCUIT_FAILURES": "5", "SAGAFLOW_CIRCUIT_PROBES": "6"},
			"circuit-failures: 7\ncircuit-probes: 3\ncircuit-open-for: 5s\n", engine.CircuitSettings{Failures: 2, OpenFor: 5 * time.Second, Probes: 6}},
		{"breakers off", []string{"--circuit-failures", "-1"}, nil, "", engine.CircuitSettings{Failures: -1, OpenFor: 30 * time.Second, Probes: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			args := c.args
			if c.file != "" {
				args = append(args, "--config", writeFile(t, "c.yaml", c.file))
			}
			s, err := settingsOf(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			if s.opts.Circuit != c.want {
				t.Errorf("circuit settings %+v, want %+v", s.opts.Circuit, c.want)
			}
		})
	}
}

func TestBadCircuitSettingsAreNamed(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		mention []string
	}{
		{"no failures", []string{"--circuit-failures", "0"}, nil, []string{"--circuit-failures", "SAGAFLOW_CIRCUIT_FAILURES", "0:", "-1 for no"}},
		{"negative failures", []string{"--circuit-failures", "-2"}, nil, []string{"--circuit-failures", "-2"}},
		{"open for zero", []string{"--circuit-open-for", "0s"}, nil, []string{"--circuit-open-for", "SAGAFLOW_CIRCUIT_OPEN_FOR", "0s"}},
		{"open for too long", nil, map[string]string{"SAGAFLOW_CIRCUIT_OPEN_FOR": "48h"}, []string{"--circuit-open-for", "48h0m0s", "24h"}},
		{"no probes", []string{"--circuit-probes", "0"}, nil, []string{"--circuit-probes", "SAGAFLOW_CIRCUIT_PROBES", "1 to 1000"}},
		{"probes not a number", []string{"--circuit-probes", "some"}, nil, []string{"circuit-probes", "some"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			_, err := settingsOf(t, c.args...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, m := range c.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

// pingRemote is a command to a remote service that never answers.
type pingRemote struct {
	ID string `json:"id"`
}

type pingInput struct {
	ID string `json:"id"`
}

const remoteService = "remote-pinger"

// TestCircuitsCommandShowsTheDaemonSettingsAtWork runs an engine with the
// breaker settings serve builds from --circuit-* flags, lets a remote
// service time out until its circuit opens, and reads it back with
// `sagaflow circuits` as a table and as JSON.
func TestCircuitsCommandShowsTheDaemonSettingsAtWork(t *testing.T) {
	const token = "test-token-0123456789"
	t.Setenv(AdminTokenEnv, token)
	addr := freeAddr(t)
	s, err := settingsOf(t, "--data-dir", t.TempDir(), "--admin-addr", addr, "--log-level", "error",
		"--circuit-failures", "1", "--circuit-open-for", "1h", "--circuit-probes", "2")
	if err != nil {
		t.Fatal(err)
	}
	tr := inmem.New()
	t.Cleanup(func() { _ = tr.Close() })
	// The remote service's queue exists, but nobody consumes it.
	if err := tr.Declare(context.Background(), transport.Queue{Name: remoteService}); err != nil {
		t.Fatal(err)
	}
	opts := s.opts
	opts.Transport = tr
	wf := workflows.New("remote.Ping", 1, func(in pingInput) (pingInput, error) { return in, nil }).
		Send("ping", workflows.CommandStep[pingInput]{
			Service: remoteService,
			Command: func(s *pingInput) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.ID, Body: pingRemote{ID: s.ID}}, nil
			},
			Timeout: 20 * time.Millisecond,
			Retry:   workflows.RetryPolicy{MaxAttempts: 3, InitialInterval: 10 * time.Millisecond},
		})
	e := engine.New(opts).Register(engine.Message[pingRemote]("remote.Ping.v1"), wf)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("engine: %v", err)
		}
	})
	select {
	case <-e.Ready():
	case err := <-done:
		t.Fatalf("engine stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("engine not ready")
	}
	a := []string{"--addr", addr}

	so, _ := runCLI(t, append([]string{"circuits"}, a...)...)
	if !strings.Contains(so, "no circuit breakers") {
		t.Errorf("circuits before any command: %q", so)
	}
	runCLI(t, append([]string{"start", "remote.Ping", "--input", `{"id":"p-1"}`, "--wait=false"}, a...)...)
	var got engine.CircuitsResponse
	for deadline := time.Now().Add(20 * time.Second); ; {
		so, _ = runCLI(t, append([]string{"circuits", "--json"}, a...)...)
		if err := json.Unmarshal([]byte(so), &got); err != nil {
			t.Fatalf("circuits --json: %v: %s", err, so)
		}
		if len(got.Circuits) == 1 && got.Circuits[0].State == "open" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("circuit to %s not open within 20s: %s", remoteService, so)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := got.Circuits[0]
	if want := (engine.CircuitSettings{Failures: 1, OpenFor: time.Hour, Probes: 2}); c.Service != remoteService || c.Settings != want || c.OpenUntil.IsZero() {
		t.Errorf("circuit %+v, want %s open with settings %+v", c, remoteService, want)
	}
	so, _ = runCLI(t, append([]string{"circuits"}, a...)...)
	lines := strings.Split(strings.TrimSpace(so), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "SERVICE") {
		t.Fatalf("circuits table: %q", so)
	}
	row := strings.Fields(lines[1])
	if want := []string{remoteService, "open", "1h0m0s", "2"}; len(row) != 7 || row[0] != want[0] || row[1] != want[1] || row[5] != want[2] || row[6] != want[3] || row[4] != "1" {
		t.Errorf("circuits row %q, want service %s, state open, opens after 1, open for 1h, 2 probes", lines[1], remoteService)
	}
}
