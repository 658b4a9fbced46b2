package workflows_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/sagaflow/sagaflow/workflows"
)

func TestRetryOfAParkedSagaCompensatesTheRestWithAFreshBudget(t *testing.T) {
	cases := []struct {
		name       string
		after      []outcome // answers to the refund (and release) after the retry
		wantStatus workflows.Status
	}{
		{"the refund works now", []outcome{accepted(), accepted()}, workflows.StatusCompensated},
		{"the refund fails again", []outcome{rejected("still no")}, workflows.StatusNeedsAttention},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, placeOrder().Send("ship-order", shipStep()))
			h.start(order1)
			h.play(reserved, charged, rejected("no"), rejected("cannot refund"))
			h.wantStatus(workflows.StatusNeedsAttention)
			refunds := slices.Collect(func(yield func(string) bool) {
				for _, m := range h.sent {
					if m.Type == typeRefund && !yield(m.ID) {
						return
					}
				}
			})

			dec, err := workflows.Retry(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), "bank fixed")
			h.apply("retry", dec, err)
			if h.inst.Status != workflows.StatusCompensating || h.inst.Attempt != 1 {
				t.Fatalf("after retry: status %s attempt %d, want compensating, attempt 1", h.inst.Status, h.inst.Attempt)
			}
			if p := h.pending(); p.Type != typeRefund || slices.Contains(refunds, p.ID) {
				t.Fatalf("retry sent %s %s, want a new refund", p.Type, p.ID)
			}
			first := dec.Records[0]
			if first.Event != workflows.EventRetryRequested || first.Detail != "bank fixed" || first.Step != "charge-payment" {
				t.Errorf("first record = %+v, want the retry request on charge-payment", first)
			}
			h.play(c.after...)
			h.wantStatus(c.wantStatus)
		})
	}
}

func TestRetryRefusesASagaThatIsNotParked(t *testing.T) {
	h := newHarness(t, placeOrder())
	h.start(order1)
	before := snapshot(t, h.inst)
	if _, err := workflows.Retry(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), ""); !errors.Is(err, workflows.ErrNotParked) {
		t.Fatalf("Retry of a running saga: err = %v, want ErrNotParked", err)
	}
	if snapshot(t, h.inst) != before {
		t.Error("a refused retry changed the instance")
	}
}

func TestSignalIsRecordedAndChangesNothingElse(t *testing.T) {
	h := newHarness(t, placeOrder())
	h.start(order1)
	pending := h.pending()
	dec, err := workflows.OnSignal(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), "sig-1", workflows.SignalSaga{Name: "approved"})
	h.apply("signal", dec, err)
	if len(dec.Records) != 1 || dec.Records[0].Event != workflows.EventSignalReceived || dec.Records[0].Detail != "approved" || dec.Records[0].MessageID != "sig-1" {
		t.Fatalf("records = %+v, want one signal_received of approved from sig-1", dec.Records)
	}
	if len(dec.Send) != 0 || h.pending().ID != pending.ID || h.inst.Status != workflows.StatusRunning {
		t.Errorf("a signal changed the saga's course: sent %d, pending %s", len(dec.Send), h.pending().ID)
	}
	h.play(reserved, charged)
	h.wantStatus(workflows.StatusCompleted)
	if _, err := workflows.OnSignal(h.ctx, h.wf, h.env(), h.inst, h.cachedState(), "sig-2", workflows.SignalSaga{Name: "late"}); !errors.Is(err, workflows.ErrTerminal) {
		t.Errorf("signal to a completed saga: err = %v, want ErrTerminal", err)
	}
}

func TestHistoryNamesTheCommandsAndReplies(t *testing.T) {
	h := newHarness(t, placeOrder())
	h.start(order1)
	h.play(reserved, rejected("card declined"), accepted())
	h.wantStatus(workflows.StatusCompensated)
	for _, r := range h.history {
		switch r.Event {
		case workflows.EventStepStarted, workflows.EventCompensationStarted,
			workflows.EventStepSucceeded, workflows.EventStepFailed, workflows.EventCompensationSucceeded:
			if r.MessageID == "" {
				t.Errorf("%s %s has no message ID", r.Event, r.Step)
			}
		}
	}
	var replies []string
	for _, r := range h.history {
		if r.Event == workflows.EventStepSucceeded || r.Event == workflows.EventStepFailed {
			replies = append(replies, r.MessageID)
		}
	}
	if !slices.Equal(replies, []string{"reply-1", "reply-2"}) {
		t.Errorf("step outcomes name replies %v, want reply-1, reply-2", replies)
	}
}
