package workflows_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/workflows"
)

// justBelowOne is the largest value Rand may return.
var justBelowOne = math.Nextafter(1, 0)

func TestRetryPolicyDelay(t *testing.T) {
	exp := workflows.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: 2}
	cases := []struct {
		name    string
		p       workflows.RetryPolicy
		attempt int
		rnd     float64
		want    time.Duration
	}{
		{"after attempt 1: the initial interval", exp, 1, 0.5, time.Second},
		{"after attempt 2: times the multiplier", exp, 2, 0.5, 2 * time.Second},
		{"after attempt 3: squared", exp, 3, 0.5, 4 * time.Second},
		{"after attempt 6: 32s", exp, 6, 0.5, 32 * time.Second},
		{"capped at the max interval", exp, 7, 0.5, time.Minute},
		{"capped far out, without overflow", exp, 10_000, 0.5, time.Minute},
		{"attempt 0 counts as 1", exp, 0, 0.5, time.Second},
		{"multiplier 1 is constant", workflows.RetryPolicy{InitialInterval: 3 * time.Second, Multiplier: 1}, 5, 0.5, 3 * time.Second},
		{"multiplier 1.5", workflows.RetryPolicy{InitialInterval: time.Second, Multiplier: 1.5}, 3, 0.5, 2250 * time.Millisecond},
		{"defaults: 100ms", workflows.RetryPolicy{}, 1, 0.5, 100 * time.Millisecond},
		{"defaults: doubling", workflows.RetryPolicy{}, 4, 0.5, 800 * time.Millisecond},
		{"defaults: capped at 30s", workflows.RetryPolicy{}, 40, 0.5, 30 * time.Second},
		{"default max above a large initial", workflows.RetryPolicy{InitialInterval: time.Minute}, 1, 0.5, 30 * time.Second},
		{"jitter: rnd 0 takes the low edge", workflows.RetryPolicy{InitialInterval: time.Second, Jitter: 0.2}, 1, 0, 800 * time.Millisecond},
		{"jitter: rnd 0.5 is the middle", workflows.RetryPolicy{InitialInterval: time.Second, Jitter: 0.2}, 1, 0.5, time.Second},
		{"jitter: spread after the cap", workflows.RetryPolicy{InitialInterval: time.Second, MaxInterval: 4 * time.Second, Jitter: 0.5}, 9, 0, 2 * time.Second},
		{"full jitter can reach zero", workflows.RetryPolicy{InitialInterval: time.Second, Jitter: 1}, 1, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.p.Delay(c.attempt, c.rnd); got != c.want {
				t.Errorf("Delay(%d, %v) = %v, want %v", c.attempt, c.rnd, got, c.want)
			}
		})
	}
}

func TestRetryPolicyJitterStaysWithinItsBounds(t *testing.T) {
	cases := []struct {
		name   string
		p      workflows.RetryPolicy
		base   time.Duration // the delay without jitter
		jitter float64
	}{
		{"20% of 1s", workflows.RetryPolicy{InitialInterval: time.Second, Jitter: 0.2}, time.Second, 0.2},
		{"50% of a capped 10s", workflows.RetryPolicy{InitialInterval: 8 * time.Second, MaxInterval: 10 * time.Second, Multiplier: 3, Jitter: 0.5}, 10 * time.Second, 0.5},
		{"none", workflows.RetryPolicy{InitialInterval: time.Second}, time.Second, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			low := time.Duration(float64(c.base) * (1 - c.jitter))
			high := time.Duration(float64(c.base) * (1 + c.jitter))
			attempt := 1
			if c.p.MaxInterval > 0 {
				attempt = 5
			}
			prev := time.Duration(-1)
			for _, rnd := range []float64{0, 0.1, 0.25, 0.5, 0.75, 0.9, justBelowOne} {
				d := c.p.Delay(attempt, rnd)
				if d < low || d > high {
					t.Errorf("Delay(rnd %v) = %v, outside [%v, %v]", rnd, d, low, high)
				}
				if d < prev {
					t.Errorf("Delay(rnd %v) = %v, shorter than with a smaller rnd (%v)", rnd, d, prev)
				}
				prev = d
			}
			if got := c.p.Delay(attempt, 0); got != low {
				t.Errorf("rnd 0: %v, want the low edge %v", got, low)
			}
			if got := c.p.Delay(attempt, justBelowOne); high-got > time.Microsecond {
				t.Errorf("rnd ~1: %v, want about the high edge %v", got, high)
			}
		})
	}
}

func TestRetryPolicyValidate(t *testing.T) {
	cases := []struct {
		name     string
		p        workflows.RetryPolicy
		mentions []string // none: valid
	}{
		{"zero value", workflows.RetryPolicy{}, nil},
		{"typical", workflows.RetryPolicy{MaxAttempts: 5, InitialInterval: time.Second, MaxInterval: time.Minute, Multiplier: 2, Jitter: 0.2}, nil},
		{"the default compensation retry", workflows.DefaultCompensationRetry, nil},
		{"jitter 1 and multiplier 1 are allowed", workflows.RetryPolicy{Multiplier: 1, Jitter: 1}, nil},
		{"initial equal to max", workflows.RetryPolicy{InitialInterval: time.Second, MaxInterval: time.Second}, nil},
		{"negative attempts", workflows.RetryPolicy{MaxAttempts: -1}, []string{"max attempts -1"}},
		{"multiplier below 1", workflows.RetryPolicy{Multiplier: 0.9}, []string{"multiplier 0.9"}},
		{"negative multiplier", workflows.RetryPolicy{Multiplier: -2}, []string{"multiplier -2"}},
		{"jitter above 1", workflows.RetryPolicy{Jitter: 1.01}, []string{"jitter 1.01"}},
		{"negative jitter", workflows.RetryPolicy{Jitter: -0.5}, []string{"jitter -0.5"}},
		{"initial above max", workflows.RetryPolicy{InitialInterval: time.Minute, MaxInterval: time.Second}, []string{"initial interval 1m0s exceeds max interval 1s"}},
		{"negative max", workflows.RetryPolicy{MaxInterval: -time.Second}, []string{"negative"}},
		{"every problem at once", workflows.RetryPolicy{MaxAttempts: -1, Multiplier: 0.5, Jitter: 3, InitialInterval: -1},
			[]string{"max attempts", "multiplier", "jitter", "negative"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.p.Validate()
			if len(c.mentions) == 0 {
				if err != nil {
					t.Errorf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted the policy")
			}
			for _, m := range c.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}
