package engine

import (
	"net/http"

	"github.com/sagaflow/sagaflow/actors"
)

// CircuitSettings configure the circuit breaker of one destination
// service: how many failures in a row open it, how long it stays open,
// how many probes it lets through half-open. See Options.Circuit.
type CircuitSettings = actors.CircuitSettings

// CircuitState is one service's circuit breaker as GET /v1/circuits shows it.
type CircuitState = actors.CircuitState

// CircuitsResponse is the body of GET /v1/circuits.
type CircuitsResponse struct {
	Circuits []CircuitState `json:"circuits"`
}

// breakers builds the engine's circuit breakers: services its own
// aggregates serve have none unless Options.Circuits names them.
func (e *Engine) breakers() *actors.Breakers {
	o := e.opts
	if o.Circuit.Failures < 0 && len(o.Circuits) == 0 {
		return nil
	}
	e.mu.RLock()
	local := make(map[string]bool, len(e.aggregates))
	for s := range e.aggregates {
		local[s] = true
	}
	e.mu.RUnlock()
	return actors.NewBreakers(func(service string) CircuitSettings {
		if s, ok := o.Circuits[service]; ok {
			return s
		}
		if local[service] {
			return CircuitSettings{Failures: -1}
		}
		return o.Circuit
	}, e.logger)
}

// Circuits returns the state of the circuit breakers of the services the
// engine has sent commands to (none before Run).
func (e *Engine) Circuits() []CircuitState {
	if e.deps == nil || e.deps.Breakers == nil {
		return []CircuitState{}
	}
	return e.deps.Breakers.States()
}

func (e *Engine) handleCircuits(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, CircuitsResponse{Circuits: e.Circuits()})
}
