package engine

import "sort"

// awaitedEvents lists the event types that steps of the registered
// workflows wait for: the saga queue subscribes to them, and the saga
// actor routes each to the saga it concerns. Workflows registered after
// Run get their event types bound on the next start.
func (e *Engine) awaitedEvents() []string {
	seen := map[string]bool{}
	var out []string
	for _, wf := range e.Workflows() {
		for _, s := range wf.Steps() {
			if s.Event != "" && !seen[s.Event] {
				seen[s.Event] = true
				out = append(out, s.Event)
			}
		}
	}
	sort.Strings(out)
	return out
}
