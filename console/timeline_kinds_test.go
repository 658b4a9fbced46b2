package console

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/workflows"
)

// lanes writes a timeline as bars does, with each row's branch, its waits
// by kind and its marks, then the saga-level markers.
func lanes(tl Timeline) string {
	var b strings.Builder
	ms := func(r workflows.Record) int64 { return r.At.Sub(t0).Milliseconds() }
	for _, r := range tl.Rows {
		b.WriteString(r.Label)
		if r.Branch != "" {
			fmt.Fprintf(&b, " [%s]", r.Branch)
		}
		b.WriteByte(':')
		for _, bar := range r.Bars {
			fmt.Fprintf(&b, " %s#%d %s %d-%d", bar.Kind, bar.Attempt, bar.Outcome, ms(workflows.Record{At: bar.Start}), ms(workflows.Record{At: bar.End}))
		}
		for _, w := range r.Waits {
			fmt.Fprintf(&b, " %s %d-%d", w.Kind, ms(workflows.Record{At: w.Start}), ms(workflows.Record{At: w.End}))
		}
		for _, m := range r.Marks {
			fmt.Fprintf(&b, " %s@%d", m.Event, ms(workflows.Record{At: m.At}))
		}
		b.WriteByte('\n')
	}
	var markers []string
	for _, m := range tl.Markers {
		markers = append(markers, fmt.Sprintf("%s@%d", m.Event, ms(workflows.Record{At: m.At})))
	}
	fmt.Fprintf(&b, "markers: %s\n", strings.Join(markers, " "))
	return b.String()
}

// The histories below are written the way the saga machine records them
// (see workflows/kinds_test.go and workflows/circuit_parallel_test.go).
func TestTimelineOfTheStepKinds(t *testing.T) {
	rec := func(ms int, event, step string, attempt int, detail string) workflows.Record {
		return workflows.Record{Event: event, Step: step, Attempt: attempt, Detail: detail, At: at(ms)}
	}
	const (
		started   = workflows.EventStepStarted
		succeeded = workflows.EventStepSucceeded
		paused    = workflows.EventStepPaused
		waiting   = workflows.EventStepWaiting
		abandoned = workflows.EventStepAbandoned
	)
	cases := []struct {
		name     string
		history  []workflows.Record
		terminal bool
		now      int
		want     string
	}{{
		name: "parallel all: branches run side by side on their own rows; one pauses until its circuit closes",
		history: []workflows.Record{
			rec(0, workflows.EventStarted, "", 0, ""),
			rec(1, started, "reserve-stock", 1, "m1"),
			rec(2, succeeded, "reserve-stock", 1, ""),
			rec(2, started, "pay-and-ship", 0, "2 branches, all"),
			rec(2, paused, "charge-payment", 0, "circuit to payments is open"),
			rec(2, started, "ship-order", 1, "m2"),
			rec(30, succeeded, "ship-order", 1, ""),
			rec(50, paused, "charge-payment", 0, "circuit to payments is open"),
			rec(100, started, "charge-payment", 1, "m3"),
			rec(120, succeeded, "charge-payment", 1, ""),
			rec(120, succeeded, "pay-and-ship", 0, ""),
			rec(120, workflows.EventCompleted, "", 0, ""),
		},
		terminal: true,
		want: `reserve-stock: step#1 succeeded 1-2
pay-and-ship: step#0 succeeded 2-120
charge-payment [pay-and-ship]: step#1 succeeded 100-120 paused 2-100
ship-order [pay-and-ship]: step#1 succeeded 2-30
markers: saga.started@0 saga.completed@120
`,
	}, {
		name: "parallel all: a failed branch fails the step, its sibling in flight is abandoned and compensated after",
		history: []workflows.Record{
			rec(0, workflows.EventStarted, "", 0, ""),
			rec(1, started, "pay-and-ship", 0, "2 branches, all"),
			rec(1, started, "charge-payment", 1, "m1"),
			rec(1, started, "ship-order", 1, "m2"),
			rec(20, workflows.EventStepFailed, "charge-payment", 1, "card declined"),
			rec(20, abandoned, "ship-order", 1, "a sibling branch failed"),
			rec(20, workflows.EventCompensationStarted, "ship-order", 1, "m3"),
			rec(30, workflows.EventCompensationSucceeded, "ship-order", 1, ""),
			rec(30, workflows.EventCompensated, "", 0, ""),
		},
		terminal: true,
		want: `pay-and-ship: step#0 failed 1-20
charge-payment [pay-and-ship]: step#1 failed 1-20
ship-order [pay-and-ship]: step#1 interrupted 1-20 step.abandoned@20
undo ship-order: compensation#1 succeeded 20-30
markers: saga.started@0 saga.compensated@30
`,
	}, {
		name: "first wins: the loser is abandoned; its compensation, a branch too, pauses on its own row",
		history: []workflows.Record{
			rec(0, workflows.EventStarted, "", 0, ""),
			rec(1, started, "pay-and-ship", 0, "2 branches, first_wins"),
			rec(1, started, "charge-payment", 1, "m1"),
			rec(1, started, "ship-order", 1, "m2"),
			rec(10, succeeded, "charge-payment", 1, ""),
			rec(10, abandoned, "ship-order", 1, "another branch won"),
			rec(10, paused, "ship-order", 0, "circuit to shipping is open"),
			rec(70, paused, "ship-order", 0, "circuit to shipping is open"),
			rec(100, workflows.EventCompensationStarted, "ship-order", 1, "m3"),
			rec(110, workflows.EventCompensationSucceeded, "ship-order", 1, ""),
			rec(110, succeeded, "pay-and-ship", 0, ""),
			rec(110, workflows.EventCompleted, "", 0, ""),
		},
		terminal: true,
		want: `pay-and-ship: step#0 succeeded 1-110
charge-payment [pay-and-ship]: step#1 succeeded 1-10
ship-order [pay-and-ship]: step#1 interrupted 1-10 step.abandoned@10
undo ship-order [pay-and-ship]: compensation#1 succeeded 100-110 paused 10-100
markers: saga.started@0 saga.completed@110
`,
	}, {
		name: "cancel mid-parallel: the step and its branches stop at the cancel",
		history: []workflows.Record{
			rec(0, workflows.EventStarted, "", 0, ""),
			rec(1, started, "pay-and-ship", 0, "2 branches, all"),
			rec(1, started, "charge-payment", 1, "m1"),
			rec(1, paused, "ship-order", 0, "circuit to shipping is open"),
			rec(40, workflows.EventCancelRequested, "", 0, "stop"),
			rec(40, abandoned, "charge-payment", 1, "saga stopped"),
			rec(40, abandoned, "ship-order", 0, "saga stopped"),
			rec(40, workflows.EventCompensationStarted, "charge-payment", 1, "m2"),
			rec(50, workflows.EventCompensationSucceeded, "charge-payment", 1, ""),
			rec(50, workflows.EventCancelled, "", 0, "stop"),
		},
		terminal: true,
		want: `pay-and-ship: step#0 interrupted 1-40
charge-payment [pay-and-ship]: step#1 interrupted 1-40 step.abandoned@40
ship-order [pay-and-ship]: paused 1-40 step.abandoned@40
undo charge-payment: compensation#1 succeeded 40-50
markers: saga.started@0 saga.cancel_requested@40 saga.cancelled@50
`,
	}, {
		name: "a back-off that ends in a pause: the back-off stops where the pause begins",
		history: []workflows.Record{
			rec(0, workflows.EventStarted, "", 0, ""),
			rec(1, started, "charge-payment", 1, "m1"),
			rec(10, workflows.EventStepRetryScheduled, "charge-payment", 1, "busy; next attempt in 1s"),
			rec(1010, paused, "charge-payment", 1, "circuit to payments is open"),
			rec(2000, paused, "charge-payment", 1, "circuit to payments is open"),
			rec(3000, started, "charge-payment", 2, "m2"),
			rec(3010, succeeded, "charge-payment", 2, ""),
			rec(3010, workflows.EventCompleted, "", 0, ""),
		},
		terminal: true,
		want: `charge-payment: step#1 retry 1-10 step#2 succeeded 3000-3010 backoff 10-1010 paused 1010-3000
markers: saga.started@0 saga.completed@3010
`,
	}, {
		name: "running and paused: the pause lasts until now",
		history: []workflows.Record{
			rec(0, workflows.EventStarted, "", 0, ""),
			rec(1, started, "reserve-stock", 1, "m1"),
			rec(2, succeeded, "reserve-stock", 1, ""),
			rec(2, paused, "ship-order", 0, "circuit to shipping is open"),
		},
		now: 500,
		want: `reserve-stock: step#1 succeeded 1-2
ship-order: paused 2-500
markers: saga.started@0
`,
	}, {
		name: "a compensation paused after a cancel goes on the compensation's row",
		history: []workflows.Record{
			rec(0, workflows.EventStarted, "", 0, ""),
			rec(1, started, "charge-payment", 1, "m1"),
			rec(10, workflows.EventCancelRequested, "", 0, "stop"),
			rec(10, paused, "charge-payment", 0, "circuit to payments is open"),
			rec(60, workflows.EventCompensationStarted, "charge-payment", 1, "m2"),
			rec(70, workflows.EventCompensationSucceeded, "charge-payment", 1, ""),
			rec(70, workflows.EventCancelled, "", 0, "stop"),
		},
		terminal: true,
		want: `charge-payment: step#1 interrupted 1-10
undo charge-payment: compensation#1 succeeded 60-70 paused 10-60
markers: saga.started@0 saga.cancel_requested@10 saga.cancelled@70
`,
	}, {
		name: "events: an early one is a track marker; the waits are wait bars, what they received marks on their rows",
		history: []workflows.Record{
			rec(0, workflows.EventStarted, "", 0, ""),
			rec(1, started, "pick-stock", 1, "m1"),
			rec(3, workflows.EventEventBuffered, "", 1, "warehouse.StockPicked.v1"),
			rec(5, succeeded, "pick-stock", 1, ""),
			rec(5, waiting, "stock-picked", 1, `event "warehouse.StockPicked.v1" for at most 1h0m0s`),
			rec(5, succeeded, "stock-picked", 1, ""),
			rec(5, waiting, "stock-arrives", 1, `event "warehouse.StockArrived.v1" for at most 1h0m0s`),
			rec(40, workflows.EventEventUnmatched, "stock-arrives", 1, "the step's Match refused it"),
			rec(60, workflows.EventEventReceived, "stock-arrives", 1, "warehouse.StockArrived.v1"),
			rec(60, succeeded, "stock-arrives", 1, ""),
			rec(60, workflows.EventCompleted, "", 0, ""),
		},
		terminal: true,
		want: `pick-stock: step#1 succeeded 1-5
stock-picked: wait#1 succeeded 5-5
stock-arrives: wait#1 succeeded 5-60 saga.event_unmatched@40 saga.event_received@60
markers: saga.started@0 saga.event_buffered@3 saga.completed@60
`,
	}, {
		name: "a wait that times out fails its bar; the branch an If took is a mark on its row",
		history: []workflows.Record{
			rec(0, workflows.EventStarted, "", 0, ""),
			rec(1, workflows.EventBranchTaken, "big-order", 0, "then"),
			rec(1, waiting, "approval", 1, `signal "approved" for at most 1s`),
			rec(1001, workflows.EventStepFailed, "approval", 1, `no signal "approved" within 1s`),
			rec(1001, workflows.EventCompensated, "", 0, ""),
		},
		terminal: true,
		want: `big-order: step.branch_taken@1
approval: wait#1 failed 1-1001
markers: saga.started@0 saga.compensated@1001
`,
	}, {
		name: "a delay cut short by a cancel is interrupted at the cancel",
		history: []workflows.Record{
			rec(0, workflows.EventStarted, "", 0, ""),
			rec(1, started, "reserve-stock", 1, "m1"),
			rec(2, succeeded, "reserve-stock", 1, ""),
			rec(2, waiting, "cool-off", 1, "delay 1h0m0s"),
			rec(50, workflows.EventCancelRequested, "", 0, "stop"),
			rec(50, workflows.EventCompensationStarted, "reserve-stock", 1, "m2"),
			rec(60, workflows.EventCompensationSucceeded, "reserve-stock", 1, ""),
			rec(60, workflows.EventCancelled, "", 0, "stop"),
		},
		terminal: true,
		want: `reserve-stock: step#1 succeeded 1-2
cool-off: wait#1 interrupted 2-50
undo reserve-stock: compensation#1 succeeded 50-60
markers: saga.started@0 saga.cancel_requested@50 saga.cancelled@60
`,
	}, {
		name: "deadline passed while waiting for a signal",
		history: []workflows.Record{
			rec(0, workflows.EventStarted, "", 0, ""),
			rec(1, waiting, "approval", 1, `signal "approved"`),
			rec(30, workflows.EventDeadlinePassed, "", 1, "deadline of 30ms passed"),
			rec(30, abandoned, "approval", 1, `waiting for signal "approved"`),
			rec(30, workflows.EventCompensated, "", 0, ""),
		},
		terminal: true,
		want: `approval: wait#1 interrupted 1-30 step.abandoned@30
markers: saga.started@0 saga.deadline_passed@30 saga.compensated@30
`,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tl := BuildTimeline(c.history, c.terminal, at(c.now))
			if got := lanes(tl); got != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
			for _, r := range tl.Rows {
				for _, w := range r.Waits {
					if w.Left < 0 || w.Width < 0 || w.Left+w.Width > 100.0001 {
						t.Errorf("%s: %s wait at %.2f width %.2f, off the track", r.Label, w.Kind, w.Left, w.Width)
					}
				}
				for _, m := range r.Marks {
					if want := 100 * float64(m.At.Sub(tl.Start)) / float64(tl.End.Sub(tl.Start)); m.Left != want {
						t.Errorf("%s: mark %s at %.2f, want %.2f", r.Label, m.Event, m.Left, want)
					}
				}
			}
		})
	}
}

func TestSagaPageDrawsBranchesPausesWaitsAndMarks(t *testing.T) {
	rec := func(ms int, event, step string, attempt int, detail string) workflows.Record {
		return workflows.Record{Event: event, Step: step, Attempt: attempt, Detail: detail, At: at(ms)}
	}
	f := newFake()
	f.sagas["o-3"] = engine.Saga{ID: "o-3", Workflow: "orders.PickAndAwait", Version: 1, Status: workflows.StatusRunning, Step: "stock-arrives",
		CreatedAt: at(0), UpdatedAt: at(200), History: []workflows.Record{
			rec(0, workflows.EventStarted, "", 0, ""),
			rec(1, workflows.EventStepStarted, "pay-and-ship", 0, "2 branches, all"),
			rec(1, workflows.EventStepPaused, "charge-payment", 0, "circuit to payments is open"),
			rec(1, workflows.EventStepStarted, "ship-order", 1, "m1"),
			rec(20, workflows.EventStepSucceeded, "ship-order", 1, ""),
			rec(100, workflows.EventStepStarted, "charge-payment", 1, "m2"),
			rec(120, workflows.EventStepSucceeded, "charge-payment", 1, ""),
			rec(120, workflows.EventStepSucceeded, "pay-and-ship", 0, ""),
			rec(120, workflows.EventStepWaiting, "stock-arrives", 1, `event "warehouse.StockArrived.v1"`),
			rec(150, workflows.EventEventUnmatched, "stock-arrives", 1, "the step's Match refused it"),
		}}
	res, body := serve(t, testConsole(f), "GET", "/console/sagas/o-3", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d:\n%s", res.StatusCode, body)
	}
	for _, want := range []string{
		// the branches, each on its own row under the Parallel step
		`<div class="tl-row step branch" data-branch-of="pay-and-ship">`,
		`title="branch of pay-and-ship: charge-payment"`,
		// the pause, drawn apart from a back-off
		`<div class="wait paused" style="left: 0.100%; width: 9.900%" title="paused: the circuit to the step's service is open">`,
		// the wait for the event, still running, and what it refused
		`class="bar wait outcome-running"`,
		`title="waiting: stock-arrives · attempt 1 · running`,
		`<div class="mark ev-plain" style="left: 15.000%" title="saga.event_unmatched at &#43;150ms · the step&#39;s Match refused it">`,
		`paused: circuit open`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("saga page lacks %s", want)
		}
	}
}
