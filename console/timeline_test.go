package console

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/workflows"
)

// bars writes a timeline as "row: kind#attempt outcome start-end; ..." in
// milliseconds from t0, one line per row, with its waits.
func bars(tl Timeline) string {
	var b strings.Builder
	ms := func(t time.Time) int64 { return t.Sub(t0).Milliseconds() }
	for _, r := range tl.Rows {
		fmt.Fprintf(&b, "%s:", r.Label)
		for _, bar := range r.Bars {
			fmt.Fprintf(&b, " %s#%d %s %d-%d", bar.Kind, bar.Attempt, bar.Outcome, ms(bar.Start), ms(bar.End))
		}
		for _, w := range r.Waits {
			fmt.Fprintf(&b, " wait %d-%d", ms(w.Start), ms(w.End))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func TestBuildTimeline(t *testing.T) {
	rec := func(ms int, event, step string, attempt int) workflows.Record {
		return workflows.Record{Event: event, Step: step, Attempt: attempt, At: at(ms)}
	}
	cases := []struct {
		name     string
		history  []workflows.Record
		terminal bool
		now      int
		want     string
	}{
		{
			name:     "compensated after retries: one bar per attempt, back-off between, compensations in their own rows",
			history:  compensatedHistory,
			terminal: true,
			now:      5000,
			want: `reserve-stock: step#1 succeeded 5-10
charge-payment: step#1 succeeded 10-15
ship-order: step#1 retry 15-20 step#2 retry 220-230 step#3 failed 630-640 wait 20-220 wait 230-630
undo charge-payment: compensation#1 succeeded 640-660
undo reserve-stock: compensation#1 succeeded 660-680
`,
		},
		{
			name:    "running: the attempt in flight runs until now",
			history: compensatedHistory[:4],
			now:     100,
			want: `reserve-stock: step#1 succeeded 5-10
charge-payment: step#1 running 10-100
`,
		},
		{
			name:    "waiting for a retry: the back-off runs until now",
			history: compensatedHistory[:7],
			now:     100,
			want: `reserve-stock: step#1 succeeded 5-10
charge-payment: step#1 succeeded 10-15
ship-order: step#1 retry 15-20 wait 20-100
`,
		},
		{
			name: "local steps record only their outcome: an instant bar",
			history: []workflows.Record{
				rec(0, workflows.EventStarted, "", 0),
				rec(1, workflows.EventStepSucceeded, "validate", 1),
				rec(1, workflows.EventCompleted, "", 0),
			},
			terminal: true,
			want: `validate: step#1 succeeded 1-1
`,
		},
		{
			name: "cancelled in flight: the attempt is interrupted, its step compensated",
			history: []workflows.Record{
				rec(0, workflows.EventStarted, "", 0),
				rec(1, workflows.EventStepStarted, "reserve-stock", 1),
				rec(50, workflows.EventCancelRequested, "", 0),
				rec(50, workflows.EventCompensationStarted, "reserve-stock", 1),
				rec(60, workflows.EventCompensationSucceeded, "reserve-stock", 1),
				rec(60, workflows.EventCancelled, "", 0),
			},
			terminal: true,
			want: `reserve-stock: step#1 interrupted 1-50
undo reserve-stock: compensation#1 succeeded 50-60
`,
		},
		{
			name: "a compensation that keeps failing parks the saga: its last attempt failed",
			history: []workflows.Record{
				rec(0, workflows.EventStarted, "", 0),
				rec(1, workflows.EventStepStarted, "a", 1),
				rec(2, workflows.EventStepSucceeded, "a", 1),
				rec(2, workflows.EventStepStarted, "b", 1),
				rec(3, workflows.EventStepFailed, "b", 1),
				rec(3, workflows.EventCompensationStarted, "a", 1),
				rec(4, workflows.EventCompensationRetry, "a", 1),
				rec(14, workflows.EventCompensationStarted, "a", 2),
				rec(15, workflows.EventNeedsAttention, "a", 2),
			},
			terminal: true,
			now:      1000,
			want: `a: step#1 succeeded 1-2
b: step#1 failed 2-3
undo a: compensation#1 retry 3-4 compensation#2 failed 14-15 wait 4-14
`,
		},
		{
			name: "an operator retries a parked saga: its compensation runs again",
			history: []workflows.Record{
				rec(0, workflows.EventStarted, "", 0),
				rec(1, workflows.EventStepStarted, "a", 1),
				rec(2, workflows.EventStepFailed, "a", 1),
				rec(2, workflows.EventCompensationStarted, "a", 1),
				rec(3, workflows.EventNeedsAttention, "a", 1),
				rec(50, "saga.retry_requested", "", 0),
				rec(50, workflows.EventCompensationStarted, "a", 1),
				rec(52, workflows.EventCompensationSucceeded, "a", 1),
				rec(52, workflows.EventCompensated, "", 0),
			},
			terminal: true,
			want: `a: step#1 failed 1-2
undo a: compensation#1 failed 2-3 compensation#1 succeeded 50-52
`,
		},
		{
			name: "nothing happened yet",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tl := BuildTimeline(c.history, c.terminal, at(c.now))
			if got := bars(tl); got != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
			for _, r := range tl.Rows {
				for _, b := range r.Bars {
					if b.Width < minBarWidth || b.Left < 0 || b.Left+b.Width > 100.0001 {
						t.Errorf("%s #%d: left %.2f width %.2f, want a visible bar on the track", r.Label, b.Attempt, b.Left, b.Width)
					}
				}
			}
		})
	}
}

func TestTimelineLayout(t *testing.T) {
	tl := BuildTimeline(compensatedHistory, true, at(0))
	if !tl.Start.Equal(at(0)) || !tl.End.Equal(at(680)) {
		t.Fatalf("track %v to %v, want the saga's first to last record", tl.Start, tl.End)
	}
	ship := tl.Rows[2]
	if b := ship.Bars[1]; b.Left < 32.3 || b.Left > 32.4 || b.Width < 1.46 || b.Width > 1.48 {
		t.Errorf("second shipping attempt: left %.2f width %.2f, want 32.35 (220ms of 680ms) and 1.47 (10ms)", b.Left, b.Width)
	}
	if b := tl.Rows[0].Bars[0]; b.Width != minBarWidth {
		t.Errorf("reserving stock took 5ms of 680ms: width %.2f, want the minimum %.2f", b.Width, minBarWidth)
	}
	if w := ship.Waits[1]; w.Left < 33.8 || w.Left > 33.9 || w.Width < 58.8 || w.Width > 58.9 {
		t.Errorf("second back-off: left %.2f width %.2f, want 33.82 and 58.82", w.Left, w.Width)
	}
	var where []string
	for _, b := range ship.Bars {
		where = append(where, b.Label)
	}
	if want := []string{LabelAfter, LabelAfter, LabelBefore}; !slices.Equal(where, want) {
		t.Errorf("shipping attempts' captions go %v, want %v (the last one is at the end of the track)", where, want)
	}
	var labels []string
	for _, tk := range tl.Ticks {
		labels = append(labels, tk.Label)
	}
	if want := []string{"+0", "+100ms", "+200ms", "+300ms", "+400ms", "+500ms", "+600ms"}; !slices.Equal(labels, want) {
		t.Errorf("ticks %v, want %v", labels, want)
	}
	var markers []string
	for _, m := range tl.Markers {
		markers = append(markers, fmt.Sprintf("%s@%.0f", m.Event, m.Left))
	}
	if want := []string{"saga.started@0", "saga.compensated@100"}; !slices.Equal(markers, want) {
		t.Errorf("markers %v, want %v", markers, want)
	}
}

func TestFormatDuration(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0"},
		{850 * time.Microsecond, "850µs"},
		{12 * time.Millisecond, "12ms"},
		{1250 * time.Millisecond, "1.25s"},
		{2 * time.Second, "2s"},
		{42 * time.Second, "42s"},
		{125 * time.Second, "2m05s"},
		{200 * time.Minute, "3h20m"},
		{52 * time.Hour, "2d4h"},
		{-3 * time.Millisecond, "-3ms"},
	} {
		if got := FormatDuration(c.d); got != c.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestDiagramDrawsTheSagasProgress(t *testing.T) {
	wf := orders.Workflow(orders.DefaultShippingRetry)
	cases := []struct {
		name    string
		status  workflows.Status
		step    string
		history []workflows.Record
		want    []string
	}{
		{"running", workflows.StatusRunning, "charge-payment", compensatedHistory[:4],
			[]string{"class s1 done", "class s2 current"}},
		{"retrying", workflows.StatusRunning, "ship-order", compensatedHistory[:7],
			[]string{"class s1 done", "class s2 done", "class s3 current"}},
		{"compensating", workflows.StatusCompensating, "reserve-stock", compensatedHistory[:14],
			[]string{"class c1 current", "class c2 comp", "class s1 done", "class s2 done", "class s3 failed"}},
		{"compensated", workflows.StatusCompensated, "", compensatedHistory,
			[]string{"class c1 comp", "class c2 comp", "class compensated current", "class s1 done", "class s2 done", "class s3 failed"}},
		{"completed", workflows.StatusCompleted, "", []workflows.Record{
			{Event: workflows.EventStepSucceeded, Step: "reserve-stock"},
			{Event: workflows.EventStepSucceeded, Step: "charge-payment"},
			{Event: workflows.EventStepSucceeded, Step: "ship-order"},
		}, []string{"class completed current", "class s1 done", "class s2 done", "class s3 done"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Diagram(wf, c.status, c.step, c.history)
			if !strings.HasPrefix(d, workflows.Mermaid(wf)) || !strings.Contains(d, "classDef current") {
				t.Fatalf("diagram should be the workflow's Mermaid text plus class lines:\n%s", d)
			}
			var got []string
			for _, line := range strings.Split(d, "\n") {
				if l := strings.TrimSpace(line); strings.HasPrefix(l, "class ") {
					got = append(got, l)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("class lines %q, want %q", got, c.want)
			}
		})
	}
}

func TestCrowdedAttemptsKeepTheirCaptionsApart(t *testing.T) {
	var h []workflows.Record
	h = append(h, workflows.Record{Event: workflows.EventStarted, At: at(0)})
	for i := range 6 { // six quick attempts, then a long wait
		h = append(h,
			workflows.Record{Event: workflows.EventStepStarted, Step: "s", Attempt: i + 1, At: at(i * 20)},
			workflows.Record{Event: workflows.EventStepRetryScheduled, Step: "s", Attempt: i + 1, At: at(i*20 + 5)})
	}
	h = append(h, workflows.Record{Event: workflows.EventStepStarted, Step: "s", Attempt: 7, At: at(1000)},
		workflows.Record{Event: workflows.EventStepSucceeded, Step: "s", Attempt: 7, At: at(1000)})
	tl := BuildTimeline(h, false, at(1000))
	var where []string
	for _, b := range tl.Rows[0].Bars {
		where = append(where, b.Label)
	}
	want := []string{LabelNone, LabelNone, LabelNone, LabelNone, LabelNone, LabelAfter, LabelBefore}
	if !slices.Equal(where, want) {
		t.Errorf("captions %v, want %v", where, want)
	}
}
