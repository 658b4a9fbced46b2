package actors_test

import (
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/actors"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/workflows"
)

func TestCommandOutcome(t *testing.T) {
	cmd := &message.Envelope{ID: "c1", Destination: "shipping"}
	waiting := workflows.Instance{Pending: cmd, TimerID: "t1", TimerPurpose: workflows.TimerTimeout}
	reply := message.Envelope{Kind: message.KindReply, CausationID: "c1"}
	other := message.Envelope{Kind: message.KindReply, CausationID: "c0"}
	branches := workflows.Instance{Branches: []workflows.BranchState{
		{Status: workflows.BranchRunning, Pending: &message.Envelope{ID: "b1", Destination: "shipping"}, TimerID: "bt1", TimerPurpose: workflows.TimerTimeout},
		{Status: workflows.BranchRunning, Pending: &message.Envelope{ID: "b2", Destination: "shipping"}, TimerID: "bt2", TimerPurpose: workflows.TimerTimeout},
	}}
	cases := []struct {
		name            string
		prev            workflows.Instance
		env             message.Envelope
		body            any
		answered, known bool
	}{
		{"success reply", waiting, reply, &message.Accepted{}, true, true},
		{"business refusal", waiting, reply, &message.Failure{Reason: "declined"}, true, true},
		{"technical failure", waiting, reply, &message.Failure{Reason: "down", Retryable: true}, false, true},
		{"timeout", waiting, message.Envelope{Kind: message.KindCommand}, &workflows.TimerFired{TimerID: "t1"}, false, true},
		{"stale timer", waiting, message.Envelope{Kind: message.KindCommand}, &workflows.TimerFired{TimerID: "t0"}, false, false},
		{"reply to another command", waiting, other, &message.Accepted{}, false, false},
		{"nothing awaited", workflows.Instance{}, reply, &message.Accepted{}, false, false},
		{"cancel", waiting, message.Envelope{Kind: message.KindCommand}, &workflows.CancelSaga{}, false, false},
		// A Parallel step's commands are in flight per branch.
		{"branch technical failure", branches, message.Envelope{Kind: message.KindReply, CausationID: "b2"}, &message.Failure{Reason: "down", Retryable: true}, false, true},
		{"branch success", branches, message.Envelope{Kind: message.KindReply, CausationID: "b1"}, &message.Accepted{}, true, true},
		{"branch timeout", branches, message.Envelope{Kind: message.KindCommand}, &workflows.TimerFired{TimerID: "bt2"}, false, true},
		{"branch reply to another command", branches, other, &message.Accepted{}, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			service, answered, known := actors.CommandOutcome(c.prev, c.env, c.body)
			if known != c.known || answered != c.answered || (known && service != "shipping") {
				t.Fatalf("CommandOutcome = %q %v %v, want answered %v known %v", service, answered, known, c.answered, c.known)
			}
		})
	}
}

// TestBreakers: failures in a row open a service's circuit (and only
// its); open, it holds commands back until its open period ends; half-
// open, it lets one probe through and holds the rest; an answered probe
// closes it, a failed one opens it again.
func TestBreakers(t *testing.T) {
	b := actors.NewBreakers(func(service string) actors.CircuitSettings {
		if service == "off" {
			return actors.CircuitSettings{Failures: -1}
		}
		return actors.CircuitSettings{Failures: 3, OpenFor: 50 * time.Millisecond}
	}, nil)
	wantOpen := func(service string, want bool) time.Time {
		t.Helper()
		at, open := b.Open(service)
		if open != want {
			t.Fatalf("%s open = %v, want %v (states %+v)", service, open, want, b.States())
		}
		return at
	}
	for range 2 {
		b.Report("shipping", false)
	}
	b.Report("shipping", true) // an answer breaks the run
	for range 2 {
		b.Report("shipping", false)
	}
	wantOpen("shipping", false)
	b.Report("shipping", false)
	until := wantOpen("shipping", true)
	if d := time.Until(until); d <= 0 || d > 50*time.Millisecond {
		t.Fatalf("open until %v from now, want within the open period", d)
	}
	wantOpen("payments", false)
	for range 10 {
		b.Report("off", false)
	}
	wantOpen("off", false)

	time.Sleep(time.Until(until) + 5*time.Millisecond)
	wantOpen("shipping", false) // the probe
	wantOpen("shipping", true)  // the rest wait
	b.Report("shipping", false) // the probe failed
	wantOpen("shipping", true)
	if s := b.States(); len(s) != 2 || s[1].Service != "shipping" || s[1].State != "open" {
		t.Fatalf("states %+v, want shipping open", s)
	}
	time.Sleep(60 * time.Millisecond)
	wantOpen("shipping", false)
	b.Report("shipping", true)
	wantOpen("shipping", false)
	wantOpen("shipping", false)
	if s := b.States(); s[1].State != "closed" {
		t.Fatalf("states %+v, want shipping closed after the answered probe", s)
	}
}
