package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/workflows"
)

// The bench saga has three command steps, each served by its own
// aggregate service. Unlike examples/orders, whose failing carrier is
// retried with back-off (which would measure the retry delays), the bench
// saga's last step fails at once with a business failure for the sagas
// marked Fail, and steps 2 and 1 are compensated.

// WorkflowName is the bench saga's name.
const WorkflowName = "bench.ThreeSteps"

// StepTimeout is every step's reply timeout: far beyond any measurement,
// so that no timeout fires and every figure is the engine's normal path.
const StepTimeout = time.Hour

// Input starts a bench saga.
type Input struct {
	// ID is the saga's ID, the key of its participants' aggregates (the
	// workflow's init function does not see the saga ID).
	ID string `json:"id"`
	// Fail makes the last step fail with a business failure.
	Fail bool `json:"fail,omitempty"`
}

// State is the bench saga's state.
type State struct {
	Input
}

// DoStep asks a participant to do step Step of a saga.
type DoStep struct {
	Step int  `json:"step"`
	Fail bool `json:"fail,omitempty"`
}

// UndoStep compensates DoStep.
type UndoStep struct {
	Step int `json:"step"`
}

// StepDone records a step done.
type StepDone struct {
	Step int `json:"step"`
}

// StepUndone records a step compensated.
type StepUndone struct {
	Step int `json:"step"`
}

// Participation is a participant aggregate's state: one per saga and step.
type Participation struct {
	Done, Undone bool
}

// ErrRefused is the last step's business failure.
var ErrRefused = errors.New("refused by the participant")

// Services names the three participant services of a run; prefix makes
// them unique per run (they are RabbitMQ queue names).
type Services struct {
	// Engine is the engine's name: its saga queue and message source.
	Engine string
	// Steps are the participants' services, in step order.
	Steps [3]string
}

// NewServices returns the service names of run id.
func NewServices(id string) Services {
	p := "sfbench-" + id
	return Services{Engine: p, Steps: [3]string{p + "-step1", p + "-step2", p + "-step3"}}
}

// Messages returns the registrations of the bench message types.
func Messages() []any {
	return []any{
		engine.Message[DoStep]("bench.DoStep.v1"),
		engine.Message[UndoStep]("bench.UndoStep.v1"),
		engine.Message[StepDone]("bench.StepDone.v1"),
		engine.Message[StepUndone]("bench.StepUndone.v1"),
	}
}

// Participant is the aggregate serving step step on service.
func Participant(service string, step int) *aggregate.Definition[Participation] {
	d := aggregate.New(service, fmt.Sprintf("bench.Step%d", step), func(string) Participation { return Participation{} })
	aggregate.Handle(d, func(s Participation, c *DoStep) ([]any, error) {
		if c.Fail {
			return nil, fmt.Errorf("step %d: %w", c.Step, ErrRefused)
		}
		return []any{StepDone{Step: c.Step}}, nil
	})
	aggregate.Handle(d, func(s Participation, c *UndoStep) ([]any, error) {
		if !s.Done || s.Undone {
			return nil, nil
		}
		return []any{StepUndone{Step: c.Step}}, nil
	})
	aggregate.Apply(d, func(s Participation, _ *StepDone) Participation { s.Done = true; return s })
	aggregate.Apply(d, func(s Participation, _ *StepUndone) Participation { s.Undone = true; return s })
	return d
}

// Workflow is the bench saga over svc's participants.
func Workflow(svc Services) *workflows.Definition[Input, State] {
	wf := workflows.New(WorkflowName, 1, func(in Input) (State, error) {
		if in.ID == "" {
			return State{}, errors.New("id is required")
		}
		return State{Input: in}, nil
	})
	for i, service := range svc.Steps {
		step := i + 1
		cs := workflows.CommandStep[State]{
			Service: service,
			Command: func(s *State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.key(), Body: DoStep{Step: step, Fail: step == 3 && s.Fail}}, nil
			},
			Timeout: StepTimeout,
		}
		if step < 3 {
			cs.Compensate = func(s *State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.key(), Body: UndoStep{Step: step}}, nil
			}
		}
		wf = wf.Send(fmt.Sprintf("step%d", step), cs)
	}
	return wf
}

// key is the participants' aggregate key: the saga's ID.
func (s *State) key() string { return s.ID }

// Register registers the bench messages, the three participants (unless
// withoutParticipants) and the workflow on e.
func Register(e *engine.Engine, svc Services, withoutParticipants bool) *engine.Engine {
	e.Register(Messages()...)
	if !withoutParticipants {
		for i, service := range svc.Steps {
			e.Register(Participant(service, i+1))
		}
	}
	return e.Register(Workflow(svc))
}
