package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"
)

// ErrInvalidDefinition is wrapped by every error Validate returns.
var ErrInvalidDefinition = errors.New("invalid workflow definition")

// DefaultStepTimeout bounds an attempt of a step that sets no Timeout.
const DefaultStepTimeout = 30 * time.Second

// Cmd is a command a step sends: the key of the entity it is about (the
// participant's aggregate ID) and the body, a registered message struct.
type Cmd struct {
	// Key selects the participant's aggregate (and so its partition).
	Key string
	// Body is the command payload; its Go type must be registered.
	Body any
}

// CommandStep sends a command to a service and waits for its reply.
type CommandStep[S any] struct {
	// Service is the destination queue of the command (required).
	Service string
	// Command builds the command from the saga state (required).
	Command func(s *S) (Cmd, error)
	// OnReply folds a successful reply into the state (optional). The reply
	// is a pointer to the registered reply struct; see Reply for a typed
	// adapter. An error fails the step without retry.
	OnReply func(s *S, reply any) error
	// Compensate builds the command that undoes this step (optional). It is
	// sent to CompensationService, or Service when that is empty.
	Compensate func(s *S) (Cmd, error)
	// CompensationService overrides where the compensation goes.
	CompensationService string
	// Retry applies to retryable failures and timeouts of the command.
	Retry RetryPolicy
	// CompensationRetry applies to the compensation (default
	// DefaultCompensationRetry).
	CompensationRetry RetryPolicy
	// Timeout bounds each attempt's wait for a reply (default
	// DefaultStepTimeout).
	Timeout time.Duration
}

// LocalStep runs a Go function inside the engine.
type LocalStep[S any] struct {
	// Run does the step's work and may change the state (required). An error
	// is retried by Retry; wrap it with Permanent to fail at once.
	Run func(ctx context.Context, s *S) error
	// Compensate undoes the step (optional).
	Compensate func(ctx context.Context, s *S) error
	// Retry applies to errors of Run.
	Retry RetryPolicy
	// CompensationRetry applies to errors of Compensate (default
	// DefaultCompensationRetry).
	CompensationRetry RetryPolicy
	// Timeout bounds each run (default DefaultStepTimeout).
	Timeout time.Duration
}

// Reply adapts a typed reply handler to CommandStep.OnReply. A reply of
// another type fails the step with an error that names both types.
func Reply[S, R any](f func(s *S, r *R) error) func(s *S, reply any) error {
	return func(s *S, reply any) error {
		r, ok := reply.(*R)
		if !ok {
			return fmt.Errorf("reply is %T, want %T", reply, (*R)(nil))
		}
		return f(s, r)
	}
}

// permanentError marks a local step error that must not be retried.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that a local step fails at once, without retries.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err: err}
}

// IsPermanent reports whether err was wrapped by Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// StepKind tells the kinds of steps apart.
type StepKind string

const (
	// KindCommand sends a command and awaits the reply.
	KindCommand StepKind = "command"
	// KindLocal runs a Go function.
	KindLocal StepKind = "local"
	// KindSignal waits for an external signal (sent through the admin API).
	KindSignal StepKind = "signal"
	// KindEvent waits for an event correlated to the saga.
	KindEvent StepKind = "event"
	// KindDelay waits for a durable timer.
	KindDelay StepKind = "delay"
	// KindParallel runs its branches (the steps that follow it) at once.
	KindParallel StepKind = "parallel"
	// KindChild starts another workflow as a child saga and waits for it.
	KindChild StepKind = "child"
	// KindIf runs one of two step sequences depending on the state.
	KindIf StepKind = "if"
)

// StepInfo describes a step for the engine, the admin API and diagrams.
//
// The steps of a definition are kept in one flat list: the branches of a
// Parallel step are the BranchCount steps that follow it, and the steps
// of an If are laid out after it, its then-steps first. Next, Then and
// Else are indexes into that list; len(Steps()) means the end of the saga.
type StepInfo struct {
	Name              string        `json:"name"`
	Kind              StepKind      `json:"kind"`
	Service           string        `json:"service,omitempty"`
	Compensable       bool          `json:"compensable"`
	Retry             RetryPolicy   `json:"retry"`
	CompensationRetry RetryPolicy   `json:"compensation_retry"`
	Timeout           time.Duration `json:"timeout"`
	// Next is the step that runs after this one succeeds (-1 for a
	// parallel branch, which returns to its Parallel step).
	Next int `json:"next"`
	// Signal names the signal a KindSignal step waits for.
	Signal string `json:"signal,omitempty"`
	// Event is the message type a KindEvent step waits for.
	Event string `json:"event,omitempty"`
	// Delay is how long a KindDelay step waits.
	Delay time.Duration `json:"delay,omitempty"`
	// Workflow is the workflow a KindChild step starts.
	Workflow string `json:"workflow,omitempty"`
	// Mode says when a KindParallel step is done.
	Mode ParallelMode `json:"mode,omitempty"`
	// BranchFrom and BranchCount locate a KindParallel step's branches.
	BranchFrom  int `json:"branch_from,omitempty"`
	BranchCount int `json:"branch_count,omitempty"`
	// Then and Else are the first steps of a KindIf step's two sequences
	// (the step after the If when a sequence is empty).
	Then int `json:"then,omitempty"`
	Else int `json:"else,omitempty"`
}

type step[S any] struct {
	info  StepInfo
	cmd   *CommandStep[S]
	local *LocalStep[S]
	wait  *waitStep[S]
	child *ChildStep[S]
	cond  func(s *S) bool
	// nestedThen marks a step of a branch's Then that has a Then itself
	// (refused by Validate).
	nestedThen bool
}

// Definition is a typed saga workflow. Build it with New and the step
// methods; register it with an engine, which validates it.
type Definition[I, S any] struct {
	name     string
	version  int
	init     func(in I) (S, error)
	seq      Seq[S]
	deadline time.Duration
}

// New starts a workflow definition called name at version (from 1). init
// turns the saga's input into its initial state.
func New[I, S any](name string, version int, init func(in I) (S, error)) *Definition[I, S] {
	return &Definition[I, S]{name: name, version: version, init: init}
}

// Send appends a step that sends a command and awaits its reply.
func (d *Definition[I, S]) Send(name string, c CommandStep[S]) *Definition[I, S] {
	d.seq.Send(name, c)
	return d
}

// Do appends a step that runs a Go function.
func (d *Definition[I, S]) Do(name string, l LocalStep[S]) *Definition[I, S] {
	d.seq.Do(name, l)
	return d
}

func orDefault(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultStepTimeout
	}
	return d
}

// Name is the workflow's name.
func (d *Definition[I, S]) Name() string { return d.name }

// Version is the workflow's definition version.
func (d *Definition[I, S]) Version() int { return d.version }

// Steps describes the steps in order.
func (d *Definition[I, S]) Steps() []StepInfo {
	out := make([]StepInfo, len(d.seq.steps))
	for i, s := range d.seq.steps {
		out[i] = s.info
	}
	return out
}

// Validate reports every structural problem of the definition, each naming
// the step it concerns. All errors wrap ErrInvalidDefinition.
func (d *Definition[I, S]) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if d.name == "" {
		add("the workflow has no name")
	}
	if d.version < 1 {
		add("version %d: versions start at 1", d.version)
	}
	if d.init == nil {
		add("no init function turns the input into the initial state")
	}
	if len(d.seq.steps) == 0 {
		add("no steps")
	}
	if d.deadline < 0 {
		add("deadline %v is negative", d.deadline)
	}
	seen := make(map[string]int, len(d.seq.steps))
	for i, s := range d.seq.steps {
		where := fmt.Sprintf("step %d %q", i+1, s.info.Name)
		if s.info.Name == "" {
			add("step %d has no name", i+1)
		} else if first, dup := seen[s.info.Name]; dup {
			add("%s: name already used by step %d", where, first+1)
		} else {
			seen[s.info.Name] = i
		}
		for _, e := range d.seq.checkStep(i, d.name) {
			add("%s: %s", where, e)
		}
		if err := s.info.Retry.Validate(); err != nil {
			add("%s: retry policy: %v", where, err)
		}
		if err := s.info.CompensationRetry.Validate(); err != nil {
			add("%s: compensation retry policy: %v", where, err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: workflow %q v%d: %w", ErrInvalidDefinition, d.name, d.version, errors.Join(errs...))
}

// Workflow is the untyped view of a Definition that the engine and the
// Machine use. Definition implements it; states are *S values.
type Workflow interface {
	Name() string
	Version() int
	Steps() []StepInfo
	Validate() error
	// InputType is the Go type of the input.
	InputType() reflect.Type
	// NewState decodes the JSON input and builds the initial state.
	NewState(input []byte) (any, error)
	// DecodeState and EncodeState move a state to and from JSON.
	DecodeState(data []byte) (any, error)
	EncodeState(state any) ([]byte, error)
	// Command builds step i's command (or its compensation when compensate).
	// ok is false when the step has no compensation.
	Command(i int, state any, compensate bool) (c Cmd, service string, ok bool, err error)
	// ApplyReply folds step i's successful reply into the state.
	ApplyReply(i int, state any, reply any) error
	// RunLocal runs step i's function (or its compensation). ok is false
	// when the step has no compensation.
	RunLocal(ctx context.Context, i int, state any, compensate bool) (ok bool, err error)
	// DeadlineAfter is the saga-level deadline (0: none).
	DeadlineAfter() time.Duration
	// Evaluate runs the condition of KindIf step i.
	Evaluate(i int, state any) (bool, error)
	// Receive offers the payload of a signal or event to the waiting step
	// i; matched is false when the step's predicate refuses it.
	Receive(i int, state any, payload []byte) (matched bool, err error)
	// ChildInput builds the workflow name and JSON input of KindChild step i.
	ChildInput(i int, state any) (workflow string, input []byte, err error)
}

var _ Workflow = (*Definition[struct{}, struct{}])(nil)

// InputType returns I's type.
func (d *Definition[I, S]) InputType() reflect.Type { return reflect.TypeFor[I]() }

// NewState decodes input as I and calls init.
func (d *Definition[I, S]) NewState(input []byte) (any, error) {
	var in I
	if len(input) > 0 {
		if err := json.Unmarshal(input, &in); err != nil {
			return nil, fmt.Errorf("workflow %q: input is not a valid %v: %w", d.name, reflect.TypeFor[I](), err)
		}
	}
	s, err := d.init(in)
	if err != nil {
		return nil, fmt.Errorf("workflow %q: init: %w", d.name, err)
	}
	return &s, nil
}

// DecodeState decodes a stored state.
func (d *Definition[I, S]) DecodeState(data []byte) (any, error) {
	s := new(S)
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("workflow %q: decode state: %w", d.name, err)
	}
	return s, nil
}

// EncodeState encodes a state for storage.
func (d *Definition[I, S]) EncodeState(state any) ([]byte, error) {
	s, err := d.state(state)
	if err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

func (d *Definition[I, S]) state(state any) (*S, error) {
	s, ok := state.(*S)
	if !ok {
		return nil, fmt.Errorf("workflow %q: state is %T, want %T", d.name, state, (*S)(nil))
	}
	return s, nil
}

func (d *Definition[I, S]) stepAt(i int) (step[S], error) {
	if i < 0 || i >= len(d.seq.steps) {
		return step[S]{}, fmt.Errorf("workflow %q: no step %d", d.name, i)
	}
	return d.seq.steps[i], nil
}

// Command builds step i's command or compensation.
func (d *Definition[I, S]) Command(i int, state any, compensate bool) (Cmd, string, bool, error) {
	st, err := d.stepAt(i)
	if err != nil {
		return Cmd{}, "", false, err
	}
	s, err := d.state(state)
	if err != nil {
		return Cmd{}, "", false, err
	}
	if st.cmd == nil {
		return Cmd{}, "", false, fmt.Errorf("workflow %q step %q is not a command step", d.name, st.info.Name)
	}
	build, service := st.cmd.Command, st.cmd.Service
	if compensate {
		if st.cmd.Compensate == nil {
			return Cmd{}, "", false, nil
		}
		build = st.cmd.Compensate
		if st.cmd.CompensationService != "" {
			service = st.cmd.CompensationService
		}
	}
	c, err := callCmd(build, s)
	if err != nil {
		return Cmd{}, "", false, fmt.Errorf("step %q: build command: %w", st.info.Name, err)
	}
	if c.Body == nil || c.Key == "" {
		return Cmd{}, "", false, fmt.Errorf("step %q: command needs a Key and a Body", st.info.Name)
	}
	return c, service, true, nil
}

// callCmd calls user code, turning a panic into an error so that one
// broken builder cannot take the engine down.
func callCmd[S any](f func(*S) (Cmd, error), s *S) (c Cmd, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f(s)
}

// ApplyReply calls the step's OnReply, if any.
func (d *Definition[I, S]) ApplyReply(i int, state any, reply any) (err error) {
	st, err := d.stepAt(i)
	if err != nil {
		return err
	}
	s, err := d.state(state)
	if err != nil {
		return err
	}
	if st.child != nil {
		return applyChild(st, s, reply)
	}
	if st.cmd == nil || st.cmd.OnReply == nil {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("step %q: reply handler panicked: %v", st.info.Name, r)
		}
	}()
	return st.cmd.OnReply(s, reply)
}

// RunLocal runs step i's function or its compensation.
func (d *Definition[I, S]) RunLocal(ctx context.Context, i int, state any, compensate bool) (ok bool, err error) {
	st, err := d.stepAt(i)
	if err != nil {
		return false, err
	}
	s, err := d.state(state)
	if err != nil {
		return false, err
	}
	if st.local == nil {
		return false, fmt.Errorf("workflow %q step %q is not a local step", d.name, st.info.Name)
	}
	run := st.local.Run
	if compensate {
		if st.local.Compensate == nil {
			return false, nil
		}
		run = st.local.Compensate
	}
	ctx, cancel := context.WithTimeout(ctx, st.info.Timeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("step %q panicked: %v", st.info.Name, r)
		}
	}()
	return true, run(ctx, s)
}
