package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// The memory and recovery sections run engines in child processes: the
// harness binary (or the test binary) executed again with envChild naming
// what to run and envChildConfig its settings as JSON. A child reports on
// standard output, one JSON childEvent per line.
const (
	envChild       = "SAGAFLOW_BENCH_CHILD"
	envChildConfig = "SAGAFLOW_BENCH_CHILD_CONFIG"
)

// Child modes.
const (
	childMemory         = "memory"
	childRecoveryHold   = "recovery-hold"
	childRecoveryResume = "recovery-resume"
)

// childConfig is what a child is told.
type childConfig struct {
	// Dir holds the child's embedded store.
	Dir string `json:"dir"`
	// RunID names the run's services.
	RunID string `json:"run_id"`
	// Count is the number of actors or sagas.
	Count int `json:"count"`
	// Partitions per queue.
	Partitions int `json:"partitions"`
	// Idle is the passivation timeout.
	Idle time.Duration `json:"idle"`
	// Timeout bounds the child's work.
	Timeout time.Duration `json:"timeout"`
	// Verbose shows the engine's warnings.
	Verbose bool `json:"verbose"`
	// HeapProfile is the prefix of the memory child's heap profiles ("":
	// none).
	HeapProfile string `json:"heap_profile,omitempty"`
}

// childEvent is one line a child writes.
type childEvent struct {
	Event       string        `json:"event"`
	Count       int           `json:"count,omitempty"`
	Compensated int           `json:"compensated,omitempty"`
	Memory      *MemoryResult `json:"memory,omitempty"`
	Error       string        `json:"error,omitempty"`
	// at is when the parent read the line.
	at time.Time
}

// isChild reports whether this process was started as a child.
func isChild() bool { return os.Getenv(envChild) != "" }

// childMain runs the child named by envChild and returns its exit code.
func childMain() int {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	var cfg childConfig
	if err := json.Unmarshal([]byte(os.Getenv(envChildConfig)), &cfg); err != nil {
		emit(childEvent{Event: "error", Error: fmt.Sprintf("child config: %v", err)})
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var err error
	switch mode := os.Getenv(envChild); mode {
	case childMemory:
		err = memoryChild(ctx, cfg)
	case childRecoveryHold:
		err = recoveryHoldChild(ctx, cfg)
	case childRecoveryResume:
		err = recoveryResumeChild(ctx, cfg)
	default:
		err = fmt.Errorf("unknown child mode %q", mode)
	}
	if err != nil {
		emit(childEvent{Event: "error", Error: err.Error()})
		return 1
	}
	return 0
}

// emit writes ev as one line on standard output.
func emit(ev childEvent) {
	data, _ := json.Marshal(ev)
	_, _ = os.Stdout.Write(append(data, '\n'))
}

// child is a running child process, from the parent's side.
type child struct {
	cmd    *exec.Cmd
	events chan childEvent
	stderr *limitedWriter
	done   chan struct{} // closed when the process has exited
}

// startChild executes this binary again as a child in mode.
func startChild(mode string, cfg childConfig) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("child %s: find this executable: %w", mode, err)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("child %s: %w", mode, err)
	}
	c := &child{events: make(chan childEvent, 16), stderr: &limitedWriter{left: 16 << 10}, done: make(chan struct{})}
	c.cmd = exec.Command(exe)
	c.cmd.Env = append(os.Environ(), envChild+"="+mode, envChildConfig+"="+string(raw))
	c.cmd.Stderr = c.stderr
	if cfg.Verbose {
		c.cmd.Stderr = io.MultiWriter(c.stderr, os.Stderr)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("child %s: %w", mode, err)
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("child %s: start %s: %w", mode, exe, err)
	}
	go func() {
		defer close(c.events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var ev childEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				continue // not ours (a library writing to stdout)
			}
			ev.at = time.Now()
			c.events <- ev
		}
	}()
	go func() {
		_ = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// await returns the child's next event named name, failing on an error
// event, on its exit and after timeout.
func (c *child) await(name string, timeout time.Duration) (childEvent, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				return childEvent{}, fmt.Errorf("child exited before %q: %s", name, c.tail())
			}
			if ev.Event == "error" {
				return childEvent{}, fmt.Errorf("child: %s", ev.Error)
			}
			if ev.Event == name {
				return ev, nil
			}
		case <-deadline.C:
			return childEvent{}, fmt.Errorf("child: no %q within %v", name, timeout)
		}
	}
}

// tail is the end of the child's standard error, for error messages.
func (c *child) tail() string {
	s := strings.TrimSpace(c.stderr.String())
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	if s == "" {
		return "(no output on stderr)"
	}
	return s
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// stop asks the child to stop (SIGTERM) and kills it after 30s.
func (c *child) stop() error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return nil
	case <-time.After(30 * time.Second):
		c.kill()
		return errors.New("child did not stop within 30s of SIGTERM; killed")
	}
}
