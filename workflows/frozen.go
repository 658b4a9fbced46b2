package workflows

import "slices"

// Freeze returns wf with its step list read once, for a workflow that is
// done being built: the engine freezes each workflow it registers, so that
// the machine reads the list on every transition without copying it (a
// Definition's Steps builds a new list each call). wf must not change
// afterwards. Freezing a frozen workflow returns it as it is.
func Freeze(wf Workflow) Workflow {
	if f, ok := wf.(*frozen); ok {
		return f
	}
	return &frozen{Workflow: wf, steps: wf.Steps()}
}

// frozen is a Workflow whose step list was read once.
type frozen struct {
	Workflow
	steps []StepInfo
}

// Steps returns a copy of the frozen list, which the caller may change.
func (f *frozen) Steps() []StepInfo { return slices.Clone(f.steps) }

// stepsOf returns wf's step list for reading only: the frozen list itself
// when wf is frozen, a fresh copy otherwise.
func stepsOf(wf Workflow) []StepInfo {
	if f, ok := wf.(*frozen); ok {
		return f.steps
	}
	return wf.Steps()
}

// StepAt returns step i of wf (ok false when wf has no step i), without
// copying the list when wf is frozen.
func StepAt(wf Workflow, i int) (step StepInfo, ok bool) {
	steps := stepsOf(wf)
	if i < 0 || i >= len(steps) {
		return StepInfo{}, false
	}
	return steps[i], true
}
