package actors

import (
	"errors"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/workflows"
)

// CircuitSettings configure the circuit breaker of one destination service.
type CircuitSettings struct {
	// Failures is how many failures in a row (technical failure replies
	// and timeouts, across all sagas) open the circuit (default 10;
	// negative: no breaker for the service).
	Failures int `json:"failures,omitempty"`
	// OpenFor is how long an open circuit holds commands back before it
	// lets a probe through (default 30s).
	OpenFor time.Duration `json:"open_for,omitempty"`
	// Probes is how many commands a half-open circuit lets through, and
	// how many of them must succeed to close it (default 1).
	Probes int `json:"probes,omitempty"`
}

func (s CircuitSettings) withDefaults() CircuitSettings {
	if s.Failures == 0 {
		s.Failures = 10
	}
	if s.OpenFor <= 0 {
		s.OpenFor = 30 * time.Second
	}
	if s.Probes <= 0 {
		s.Probes = 1
	}
	return s
}

// CircuitState is one breaker's state, for the admin API.
type CircuitState struct {
	Service string `json:"service"`
	// State is "closed", "open" or "half-open".
	State string `json:"state"`
	// ConsecutiveFailures counts the failures in a row seen while closed.
	ConsecutiveFailures uint32 `json:"consecutive_failures"`
	// OpenUntil is when an open circuit lets a probe through.
	OpenUntil time.Time `json:"open_until,omitzero"`
	// Settings are the breaker's thresholds.
	Settings CircuitSettings `json:"settings"`
}

// Breakers keeps one circuit breaker (sony/gobreaker) per destination
// service, fed by the outcomes of the commands sagas send to it (see
// Observe) and asked by the saga machine before each send (see Open).
// While a service's circuit is open, sagas pause their step instead of
// sending and burning attempts; half-open, it lets Probes commands through
// and closes when they succeed. State is per engine process, in memory,
// on the wall clock. It is safe for concurrent use.
type Breakers struct {
	settings func(service string) CircuitSettings
	logger   *slog.Logger

	mu sync.Mutex
	m  map[string]*breaker
}

type breaker struct {
	cb       *gobreaker.CircuitBreaker[struct{}]
	settings CircuitSettings

	mu        sync.Mutex // never held while calling cb
	openUntil time.Time
	probes    int       // commands let through in the current half-open period
	probeAt   time.Time // when the last was
}

// NewBreakers returns breakers whose settings per service come from
// settings (a service whose Failures is negative gets none).
func NewBreakers(settings func(service string) CircuitSettings, logger *slog.Logger) *Breakers {
	if logger == nil {
		logger = slog.Default()
	}
	return &Breakers{settings: settings, logger: logger, m: make(map[string]*breaker)}
}

// errFailed is what a failed command reports to its breaker.
var errFailed = errors.New("command failed")

func (b *Breakers) get(service string) *breaker {
	b.mu.Lock()
	defer b.mu.Unlock()
	if br, ok := b.m[service]; ok {
		return br
	}
	s := b.settings(service)
	if s.Failures < 0 {
		b.m[service] = nil
		return nil
	}
	s = s.withDefaults()
	br := &breaker{settings: s}
	br.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        service,
		MaxRequests: uint32(s.Probes),
		Timeout:     s.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(s.Failures) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			// Called with the gobreaker's lock held: touch only ours.
			br.mu.Lock()
			br.probes = 0
			if to == gobreaker.StateOpen {
				br.openUntil = time.Now().Add(s.OpenFor)
			}
			br.mu.Unlock()
			b.logger.Warn("circuit breaker changed state", "service", name, "from", from.String(), "to", to.String())
		},
	})
	b.m[service] = br
	return br
}

// Open reports whether commands to service must wait, and until when (on
// the wall clock). Open: until the open period ends. Half-open: a command
// may go as a probe while fewer than Probes went in this period (or the
// last went longer than OpenFor ago and never reported back); the others
// wait a quarter of OpenFor.
func (b *Breakers) Open(service string) (time.Time, bool) {
	br := b.get(service)
	if br == nil {
		return time.Time{}, false
	}
	state := br.cb.State()
	now := time.Now()
	br.mu.Lock()
	defer br.mu.Unlock()
	switch state {
	case gobreaker.StateOpen:
		return br.openUntil, true
	case gobreaker.StateHalfOpen:
		if br.probes < br.settings.Probes || now.Sub(br.probeAt) > br.settings.OpenFor {
			br.probes++
			br.probeAt = now
			return time.Time{}, false
		}
		return now.Add(max(br.settings.OpenFor/4, 10*time.Millisecond)), true
	}
	return time.Time{}, false
}

// Report counts one outcome of a command to service: answered (a reply,
// including a business refusal) or failed (a technical failure reply or a
// timeout). Outcomes that arrive while the circuit is open are not counted.
func (b *Breakers) Report(service string, answered bool) {
	br := b.get(service)
	if br == nil {
		return
	}
	_, _ = br.cb.Execute(func() (struct{}, error) {
		if answered {
			return struct{}{}, nil
		}
		return struct{}{}, errFailed
	})
}

// States returns the state of every breaker made so far, by service.
func (b *Breakers) States() []CircuitState {
	b.mu.Lock()
	brs := make(map[string]*breaker, len(b.m))
	for s, br := range b.m {
		if br != nil {
			brs[s] = br
		}
	}
	b.mu.Unlock()
	out := make([]CircuitState, 0, len(brs))
	for s, br := range brs {
		st := CircuitState{Service: s, State: br.cb.State().String(), ConsecutiveFailures: br.cb.Counts().ConsecutiveFailures, Settings: br.settings}
		if st.State == gobreaker.StateOpen.String() {
			br.mu.Lock()
			st.OpenUntil = br.openUntil
			br.mu.Unlock()
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

// CommandOutcome says what a message a saga handled tells about the
// command it awaited: the service it was sent to, and whether that
// service answered (any reply but a retryable failure) or failed (a
// retryable failure, or the reply timeout firing). known is false for a
// message that says nothing about it. prev is the saga before the message.
func CommandOutcome(prev workflows.Instance, env message.Envelope, body any) (service string, answered, known bool) {
	if service, answered, known = flightOutcome(prev.Pending, prev.TimerID, prev.TimerPurpose, env, body); known {
		return service, answered, known
	}
	// The commands of a running Parallel step are in flight per branch.
	for _, b := range prev.Branches {
		if service, answered, known = flightOutcome(b.Pending, b.TimerID, b.TimerPurpose, env, body); known {
			return service, answered, known
		}
	}
	return "", false, false
}

// flightOutcome is CommandOutcome for one command in flight, p, with its
// timer.
func flightOutcome(p *message.Envelope, timerID string, purpose workflows.TimerPurpose, env message.Envelope, body any) (service string, answered, known bool) {
	if p == nil {
		return "", false, false
	}
	if t, ok := body.(*workflows.TimerFired); ok {
		if t.TimerID == timerID && purpose == workflows.TimerTimeout {
			return p.Destination, false, true
		}
		return "", false, false
	}
	if env.Kind != message.KindReply || env.CausationID != p.ID {
		return "", false, false
	}
	if f, ok := body.(*message.Failure); ok && f.Retryable {
		return p.Destination, false, true
	}
	return p.Destination, true, true
}

// observe feeds a committed saga transition's outcome to the breakers.
func (d *Deps) observe(prev workflows.Instance, env message.Envelope, body any) {
	if d.Breakers == nil {
		return
	}
	if service, answered, ok := CommandOutcome(prev, env, body); ok {
		d.Breakers.Report(service, answered)
	}
}

// circuitOpen is the machine's Env.CircuitOpen: the breaker's wall-clock
// time mapped onto the engine's clock, since timers are due on the latter.
func (d *Deps) circuitOpen(service string) (time.Time, bool) {
	at, open := d.Breakers.Open(service)
	if !open {
		return time.Time{}, false
	}
	return d.now().Add(time.Until(at)), true
}
