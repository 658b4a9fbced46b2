package workflows

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/sagaflow/sagaflow/message"
)

// ParallelMode says when a Parallel step is done.
type ParallelMode string

const (
	// All: every branch must succeed. When one fails for good, the
	// branches that succeeded (or may have) are compensated, then the
	// steps before, in reverse order.
	All ParallelMode = "all"
	// FirstWins: the first branch to succeed wins; the others are
	// abandoned and compensated if they succeeded or may have. The step
	// fails when every branch failed.
	FirstWins ParallelMode = "first_wins"
)

// DefaultChildTimeout bounds the wait for a child saga whose step sets no
// Timeout.
const DefaultChildTimeout = 24 * time.Hour

// SignalStep waits for an external signal, sent to the saga through the
// engine (the admin API's POST /v1/sagas/{id}/signal).
type SignalStep[S any] struct {
	// Signal is the signal's name (required), for example "approved".
	Signal string
	// Timeout fails the step when no signal came in time (0: wait
	// forever). The failure compensates the steps done before.
	Timeout time.Duration
	// OnSignal folds the signal's JSON payload into the state (optional);
	// see Payload for a typed adapter. An error fails the step.
	OnSignal func(s *S, payload json.RawMessage) error
}

// EventStep waits for an event of a registered type that is correlated to
// the saga: its envelope carries the saga's ID (events that aggregates
// emit while handling a saga's command do) or the saga's correlation ID.
type EventStep[S any] struct {
	// Event is the event's registered type name (required), for example
	// "inventory.StockArrived.v1".
	Event string
	// Timeout fails the step when no matching event came in time (0: wait
	// forever).
	Timeout time.Duration
	// Match decides whether an event of the type is the one awaited
	// (optional; nil accepts every event of the type). An event that does
	// not match is recorded and changes nothing else.
	Match func(s *S, payload json.RawMessage) (bool, error)
	// OnEvent folds the event's payload into the state (optional). An
	// error fails the step.
	OnEvent func(s *S, payload json.RawMessage) error
}

// ChildStep starts another registered workflow as a child saga and waits
// for it to end. The child's ID is derived from the parent's ID and the
// step's name, so a resent start starts it once. The child's failure
// fails the step; compensating the step cancels a running child or
// compensates a completed one.
type ChildStep[S any] struct {
	// Workflow names the child workflow (required); its latest version
	// registered when the child starts is used.
	Workflow string
	// Input builds the child's input, encoded as JSON (optional: none).
	Input func(s *S) (any, error)
	// OnDone folds the completed child's final state (JSON) into the
	// parent's state (optional). An error fails the step.
	OnDone func(s *S, childState json.RawMessage) error
	// Timeout bounds the wait for the child (default DefaultChildTimeout);
	// when it passes the step fails and the child is compensated.
	Timeout time.Duration
	// CompensationRetry applies to compensating the child (default
	// DefaultCompensationRetry).
	CompensationRetry RetryPolicy
}

// Branch is one branch of a Parallel step: a command step with its own
// compensation, and, under All, the command steps that follow it.
type Branch[S any] struct {
	// Name names the branch's step (unique in the workflow).
	Name string
	// Step is the command the branch sends.
	Step CommandStep[S]
	// Then are command steps the branch sends one after the other once
	// Step succeeded (a short sequence; their own Then must be empty).
	// The branch succeeds when the last one does; each is compensated on
	// its own, in reverse order. Only a Parallel step with mode All may
	// have them.
	Then []Branch[S]
}

// Payload adapts a typed handler of a signal or event payload. A payload
// that does not decode as P fails with an error naming P.
func Payload[S, P any](f func(s *S, p *P) error) func(s *S, payload json.RawMessage) error {
	return func(s *S, payload json.RawMessage) error {
		p, err := decodePayload[P](payload)
		if err != nil {
			return err
		}
		return f(s, p)
	}
}

// Matching adapts a typed event predicate for EventStep.Match.
func Matching[S, P any](f func(s *S, p *P) bool) func(s *S, payload json.RawMessage) (bool, error) {
	return func(s *S, payload json.RawMessage) (bool, error) {
		p, err := decodePayload[P](payload)
		if err != nil {
			return false, err
		}
		return f(s, p), nil
	}
}

func decodePayload[P any](payload json.RawMessage) (*P, error) {
	p := new(P)
	if len(payload) == 0 {
		return p, nil
	}
	if err := json.Unmarshal(payload, p); err != nil {
		return nil, fmt.Errorf("payload is not a valid %T: %w", *p, err)
	}
	return p, nil
}

// waitStep is the untyped core of SignalStep and EventStep.
type waitStep[S any] struct {
	match   func(s *S, payload json.RawMessage) (bool, error)
	receive func(s *S, payload json.RawMessage) error
}

// Seq is a sequence of steps, for the branches of If and When. Build it
// with Steps and the same step methods as a Definition.
type Seq[S any] struct {
	steps []step[S]
}

// Steps starts an empty step sequence.
func Steps[S any]() *Seq[S] { return &Seq[S]{} }

func (q *Seq[S]) add(st step[S]) {
	st.info.Next = len(q.steps) + 1
	q.steps = append(q.steps, st)
}

// Send appends a step that sends a command and awaits its reply.
func (q *Seq[S]) Send(name string, c CommandStep[S]) *Seq[S] {
	q.add(commandStep(name, c))
	return q
}

func commandStep[S any](name string, c CommandStep[S]) step[S] {
	return step[S]{cmd: &c, info: StepInfo{
		Name: name, Kind: KindCommand, Service: c.Service, Compensable: c.Compensate != nil,
		Retry: c.Retry, CompensationRetry: compRetry(c.CompensationRetry), Timeout: orDefault(c.Timeout),
	}}
}

func compRetry(p RetryPolicy) RetryPolicy {
	if p == (RetryPolicy{}) {
		return DefaultCompensationRetry
	}
	return p
}

// Do appends a step that runs a Go function.
func (q *Seq[S]) Do(name string, l LocalStep[S]) *Seq[S] {
	q.add(step[S]{local: &l, info: StepInfo{
		Name: name, Kind: KindLocal, Compensable: l.Compensate != nil,
		Retry: l.Retry, CompensationRetry: compRetry(l.CompensationRetry), Timeout: orDefault(l.Timeout),
	}})
	return q
}

// Await appends a step that waits for an external signal.
func (q *Seq[S]) Await(name string, w SignalStep[S]) *Seq[S] {
	ws := &waitStep[S]{receive: w.OnSignal}
	q.add(step[S]{wait: ws, info: StepInfo{
		Name: name, Kind: KindSignal, Signal: w.Signal, Timeout: w.Timeout,
		CompensationRetry: DefaultCompensationRetry,
	}})
	return q
}

// AwaitEvent appends a step that waits for an event correlated to the saga.
func (q *Seq[S]) AwaitEvent(name string, e EventStep[S]) *Seq[S] {
	ws := &waitStep[S]{match: e.Match, receive: e.OnEvent}
	q.add(step[S]{wait: ws, info: StepInfo{
		Name: name, Kind: KindEvent, Event: e.Event, Timeout: e.Timeout,
		CompensationRetry: DefaultCompensationRetry,
	}})
	return q
}

// Delay appends a step that waits for d on a durable timer.
func (q *Seq[S]) Delay(name string, d time.Duration) *Seq[S] {
	q.add(step[S]{info: StepInfo{Name: name, Kind: KindDelay, Delay: d, CompensationRetry: DefaultCompensationRetry}})
	return q
}

// Child appends a step that runs another workflow as a child saga.
func (q *Seq[S]) Child(name string, c ChildStep[S]) *Seq[S] {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultChildTimeout
	}
	q.add(step[S]{child: &c, info: StepInfo{
		Name: name, Kind: KindChild, Workflow: c.Workflow, Compensable: true,
		CompensationRetry: compRetry(c.CompensationRetry), Timeout: timeout,
	}})
	return q
}

// Parallel appends a step that sends the commands of its branches at once
// and is done when mode says so. Each branch is compensated on its own.
func (q *Seq[S]) Parallel(name string, mode ParallelMode, branches ...Branch[S]) *Seq[S] {
	at := len(q.steps)
	q.add(step[S]{info: StepInfo{
		Name: name, Kind: KindParallel, Mode: mode, CompensationRetry: DefaultCompensationRetry,
		BranchFrom: at + 1, BranchCount: len(branches),
	}})
	for _, b := range branches {
		st := commandStep(b.Name, b.Step)
		st.info.Next = -1
		q.steps = append(q.steps, st)
	}
	// The steps that follow a branch's first come after every branch's
	// first (the machine finds branch k at BranchFrom+k), chained by Next;
	// the last of each has Next -1.
	for k, b := range branches {
		prev := at + 1 + k
		for _, then := range b.Then {
			st := commandStep(then.Name, then.Step)
			st.info.Next = -1
			st.nestedThen = len(then.Then) > 0
			q.steps[prev].info.Next = len(q.steps)
			prev = len(q.steps)
			q.steps = append(q.steps, st)
		}
	}
	q.steps[at].info.Next = len(q.steps)
	return q
}

// If appends a conditional step: cond decides on the state whether then
// or otherwise runs (either may be nil: no steps). The branch taken is
// recorded, and compensation undoes exactly the steps that ran.
func (q *Seq[S]) If(name string, cond func(s *S) bool, then, otherwise *Seq[S]) *Seq[S] {
	if then == nil {
		then = &Seq[S]{}
	}
	if otherwise == nil {
		otherwise = &Seq[S]{}
	}
	at := len(q.steps)
	thenAt := at + 1
	elseAt := thenAt + len(then.steps)
	join := elseAt + len(otherwise.steps)
	q.steps = append(q.steps, step[S]{cond: cond, info: StepInfo{
		Name: name, Kind: KindIf, Next: join, Then: thenAt, Else: elseAt,
		CompensationRetry: DefaultCompensationRetry,
	}})
	if len(then.steps) == 0 {
		q.steps[at].info.Then = join
	}
	q.splice(then, thenAt, join)
	q.splice(otherwise, elseAt, join)
	return q
}

// When appends a conditional step that runs then only when cond holds.
func (q *Seq[S]) When(name string, cond func(s *S) bool, then *Seq[S]) *Seq[S] {
	return q.If(name, cond, then, nil)
}

// splice appends sub's steps, renumbered to start at offset, with the end
// of sub jumping to join.
func (q *Seq[S]) splice(sub *Seq[S], offset, join int) {
	end := len(sub.steps)
	move := func(i int) int {
		switch {
		case i < 0:
			return i
		case i >= end:
			return join
		}
		return i + offset
	}
	for _, st := range sub.steps {
		st.info.Next = move(st.info.Next)
		switch st.info.Kind {
		case KindIf:
			st.info.Then, st.info.Else = move(st.info.Then), move(st.info.Else)
		case KindParallel:
			st.info.BranchFrom += offset
		}
		q.steps = append(q.steps, st)
	}
}

// Await appends a step that waits for an external signal.
func (d *Definition[I, S]) Await(name string, w SignalStep[S]) *Definition[I, S] {
	d.seq.Await(name, w)
	return d
}

// AwaitEvent appends a step that waits for an event correlated to the saga.
func (d *Definition[I, S]) AwaitEvent(name string, e EventStep[S]) *Definition[I, S] {
	d.seq.AwaitEvent(name, e)
	return d
}

// Delay appends a step that waits for dur on a durable timer.
func (d *Definition[I, S]) Delay(name string, dur time.Duration) *Definition[I, S] {
	d.seq.Delay(name, dur)
	return d
}

// Child appends a step that runs another workflow as a child saga.
func (d *Definition[I, S]) Child(name string, c ChildStep[S]) *Definition[I, S] {
	d.seq.Child(name, c)
	return d
}

// Parallel appends a step that runs branches at once; see Seq.Parallel.
func (d *Definition[I, S]) Parallel(name string, mode ParallelMode, branches ...Branch[S]) *Definition[I, S] {
	d.seq.Parallel(name, mode, branches...)
	return d
}

// If appends a conditional step; see Seq.If.
func (d *Definition[I, S]) If(name string, cond func(s *S) bool, then, otherwise *Seq[S]) *Definition[I, S] {
	d.seq.If(name, cond, then, otherwise)
	return d
}

// When appends a conditional step without else; see Seq.When.
func (d *Definition[I, S]) When(name string, cond func(s *S) bool, then *Seq[S]) *Definition[I, S] {
	d.seq.When(name, cond, then)
	return d
}

// Deadline sets a saga-level deadline: when dur has passed since the
// start, whatever runs is abandoned and the completed steps are
// compensated. It is a durable timer.
func (d *Definition[I, S]) Deadline(dur time.Duration) *Definition[I, S] {
	d.deadline = dur
	return d
}

// DeadlineAfter returns the saga-level deadline (0: none).
func (d *Definition[I, S]) DeadlineAfter() time.Duration { return d.deadline }

// checkStep reports the problems of step i of the kinds beyond command
// and local, and of command and local steps, without the step's name
// (the caller adds it).
func (q *Seq[S]) checkStep(i int, workflow string) []string {
	s := q.steps[i]
	var errs []string
	add := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if s.info.Timeout < 0 {
		add("timeout %v is negative", s.info.Timeout)
	}
	switch s.info.Kind {
	case KindCommand:
		if s.cmd.Service == "" {
			add("command step has no Service to send to")
		}
		if s.cmd.Command == nil {
			add("command step has no Command function")
		}
		if s.cmd.Timeout < 0 {
			add("timeout %v is negative", s.cmd.Timeout)
		}
	case KindLocal:
		if s.local.Run == nil {
			add("local step has no Run function")
		}
		if s.local.Timeout < 0 {
			add("timeout %v is negative", s.local.Timeout)
		}
	case KindSignal:
		if s.info.Signal == "" {
			add("signal step names no Signal to wait for")
		}
	case KindEvent:
		if s.info.Event == "" {
			add("event step names no Event type to wait for")
		} else if _, _, err := message.ParseType(s.info.Event); err != nil {
			add("event type: %v", err)
		}
	case KindDelay:
		if s.info.Delay <= 0 {
			add("delay %v must be positive", s.info.Delay)
		}
	case KindChild:
		if s.info.Workflow == "" {
			add("child step names no Workflow to start")
		} else if s.info.Workflow == workflow {
			add("child step starts its own workflow %q, which would recurse without end", workflow)
		}
	case KindIf:
		if s.cond == nil {
			add("conditional step has no condition")
		}
	case KindParallel:
		if s.info.Mode != All && s.info.Mode != FirstWins {
			add("parallel mode %q is not all or first_wins", s.info.Mode)
		}
		if s.info.BranchCount < 1 {
			add("parallel step has no branches")
		}
		for k := range s.info.BranchCount {
			if b := s.info.BranchFrom + k; b < len(q.steps) && q.steps[b].info.Next >= 0 && s.info.Mode != All {
				add("branch %q has steps after it (Then): only a parallel step with mode all may", q.steps[b].info.Name)
			}
		}
	}
	if s.nestedThen {
		add("a step of a branch's Then has a Then of its own: list every step of the branch in the branch's Then")
	}
	return errs
}

// Evaluate runs step i's condition.
func (d *Definition[I, S]) Evaluate(i int, state any) (ok bool, err error) {
	st, s, err := d.stepState(i, state)
	if err != nil {
		return false, err
	}
	if st.cond == nil {
		return false, fmt.Errorf("workflow %q step %q is not a conditional step", d.name, st.info.Name)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("step %q: condition panicked: %v", st.info.Name, r)
		}
	}()
	return st.cond(s), nil
}

// Receive offers a signal's or event's payload to waiting step i.
func (d *Definition[I, S]) Receive(i int, state any, payload []byte) (matched bool, err error) {
	st, s, err := d.stepState(i, state)
	if err != nil {
		return false, err
	}
	if st.wait == nil {
		return false, fmt.Errorf("workflow %q step %q is not a waiting step", d.name, st.info.Name)
	}
	defer func() {
		if r := recover(); r != nil {
			matched, err = true, fmt.Errorf("step %q: handler panicked: %v", st.info.Name, r)
		}
	}()
	if st.wait.match != nil {
		ok, err := st.wait.match(s, payload)
		if err != nil {
			return true, fmt.Errorf("step %q: match: %w", st.info.Name, err)
		}
		if !ok {
			return false, nil
		}
	}
	if st.wait.receive == nil {
		return true, nil
	}
	if err := st.wait.receive(s, payload); err != nil {
		return true, fmt.Errorf("step %q: %w", st.info.Name, err)
	}
	return true, nil
}

// ChildInput builds child step i's workflow name and input.
func (d *Definition[I, S]) ChildInput(i int, state any) (wf string, input []byte, err error) {
	st, s, err := d.stepState(i, state)
	if err != nil {
		return "", nil, err
	}
	if st.child == nil {
		return "", nil, fmt.Errorf("workflow %q step %q is not a child step", d.name, st.info.Name)
	}
	if st.child.Input == nil {
		return st.child.Workflow, nil, nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("step %q: child input panicked: %v", st.info.Name, r)
		}
	}()
	in, err := st.child.Input(s)
	if err != nil {
		return "", nil, fmt.Errorf("step %q: child input: %w", st.info.Name, err)
	}
	data, err := json.Marshal(in)
	if err != nil {
		return "", nil, fmt.Errorf("step %q: encode child input: %w", st.info.Name, err)
	}
	return st.child.Workflow, data, nil
}

func (d *Definition[I, S]) stepState(i int, state any) (step[S], *S, error) {
	st, err := d.stepAt(i)
	if err != nil {
		return step[S]{}, nil, err
	}
	s, err := d.state(state)
	if err != nil {
		return step[S]{}, nil, err
	}
	return st, s, nil
}

// applyChild folds a child's end into the state.
func applyChild[S any](st step[S], s *S, reply any) (err error) {
	end, ok := reply.(*ChildEnded)
	if !ok {
		return fmt.Errorf("step %q: reply is %T, want %T", st.info.Name, reply, (*ChildEnded)(nil))
	}
	if st.child.OnDone == nil {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("step %q: OnDone panicked: %v", st.info.Name, r)
		}
	}()
	return st.child.OnDone(s, end.State)
}
