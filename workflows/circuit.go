package workflows

import (
	"errors"
	"fmt"
	"time"
)

// EventStepPaused is the history event of a step whose command was not
// sent because the circuit to its service is open (Env.CircuitOpen): the
// attempt is given back and a retry timer is set for when the circuit
// lets a request through. It is recorded for compensations too.
const EventStepPaused = "step.paused"

// errPaused tells send's callers that the command was held back, not
// sent: the saga waits for its retry timer.
var errPaused = errors.New("paused: circuit open")

// minPause is the shortest pause, for a circuit that reopens as we ask.
const minPause = 10 * time.Millisecond

// pauseIfOpen asks Env.CircuitOpen whether commands may go to service.
// When not, it gives f's current attempt back (a pause burns no retry),
// sets f's retry timer for retryAt, records the pause and reports true.
func (r *run) pauseIfOpen(service string, f flight) bool {
	if r.env.CircuitOpen == nil {
		return false
	}
	retryAt, open := r.env.CircuitOpen(service)
	if !open {
		return false
	}
	*f.attempt = max(*f.attempt-1, 0)
	if retryAt.Before(r.env.Now.Add(minPause)) {
		retryAt = r.env.Now.Add(minPause)
	}
	r.setTimer(TimerRetry, retryAt, f)
	r.record(EventStepPaused, f.step, fmt.Sprintf("circuit to %s is open; trying again at %s", service, retryAt.Format(time.RFC3339Nano)))
	return true
}
