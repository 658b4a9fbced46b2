package workflows

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// RetryPolicy says how often and how fast a step is tried again after a
// retryable failure or a timeout. The zero value means one attempt and no
// retry.
//
// The delay before attempt n+1 is InitialInterval * Multiplier^(n-1), capped
// at MaxInterval, then spread by ±Jitter of itself. It is a function of the
// attempt number rather than a stateful back-off object because the attempt
// number is persisted with the saga and the retry is a durable timer: the
// next delay must be computable after a restart.
type RetryPolicy struct {
	// MaxAttempts is the total number of attempts, the first included
	// (0 or 1: no retry).
	MaxAttempts int `json:"max_attempts,omitempty"`
	// InitialInterval is the delay before the second attempt (default 100ms).
	InitialInterval time.Duration `json:"initial_interval,omitempty"`
	// MaxInterval caps the delay (default 30s).
	MaxInterval time.Duration `json:"max_interval,omitempty"`
	// Multiplier grows the delay per attempt (default 2; at least 1).
	Multiplier float64 `json:"multiplier,omitempty"`
	// Jitter spreads each delay by up to ±Jitter of itself (0 to 1; 0: none).
	Jitter float64 `json:"jitter,omitempty"`
}

// DefaultCompensationRetry is used for a compensation whose step sets no
// CompensationRetry: compensations must not give up easily.
var DefaultCompensationRetry = RetryPolicy{MaxAttempts: 10, InitialInterval: 100 * time.Millisecond, MaxInterval: 10 * time.Second, Multiplier: 2, Jitter: 0.2}

func (p RetryPolicy) attempts() int {
	if p.MaxAttempts < 1 {
		return 1
	}
	return p.MaxAttempts
}

// Validate reports a policy whose numbers make no sense.
func (p RetryPolicy) Validate() error {
	var errs []error
	if p.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("max attempts %d is negative", p.MaxAttempts))
	}
	if p.InitialInterval < 0 || p.MaxInterval < 0 {
		errs = append(errs, errors.New("intervals must not be negative"))
	}
	if p.MaxInterval > 0 && p.InitialInterval > p.MaxInterval {
		errs = append(errs, fmt.Errorf("initial interval %v exceeds max interval %v", p.InitialInterval, p.MaxInterval))
	}
	if p.Multiplier != 0 && p.Multiplier < 1 {
		errs = append(errs, fmt.Errorf("multiplier %v is below 1", p.Multiplier))
	}
	if p.Jitter < 0 || p.Jitter > 1 {
		errs = append(errs, fmt.Errorf("jitter %v is outside 0..1", p.Jitter))
	}
	return errors.Join(errs...)
}

// Delay returns the wait before attempt+1, given that attempt (from 1) just
// failed. rnd is a uniform random number in [0,1) that places the jitter.
func (p RetryPolicy) Delay(attempt int, rnd float64) time.Duration {
	initial, maxI, mult, jitter := p.InitialInterval, p.MaxInterval, p.Multiplier, p.Jitter
	if initial <= 0 {
		initial = 100 * time.Millisecond
	}
	if maxI <= 0 {
		maxI = 30 * time.Second
	}
	if mult < 1 {
		mult = 2
	}
	if attempt < 1 {
		attempt = 1
	}
	d := float64(initial) * math.Pow(mult, float64(attempt-1))
	if d > float64(maxI) {
		d = float64(maxI)
	}
	d += d * jitter * (2*rnd - 1)
	if d < 0 {
		d = 0
	}
	return time.Duration(d)
}
