package console

import (
	"fmt"
	"strings"
	"time"

	"github.com/sagaflow/sagaflow/workflows"
)

// Bar kinds: a forward attempt of a step, or an attempt of its
// compensation.
const (
	KindStep         = "step"
	KindCompensation = "compensation"
)

// Bar outcomes: how an attempt ended.
const (
	// OutcomeSucceeded: the attempt's reply (or local function) succeeded.
	OutcomeSucceeded = "succeeded"
	// OutcomeRetry: the attempt failed and another one was scheduled.
	OutcomeRetry = "retry"
	// OutcomeFailed: the attempt failed for good.
	OutcomeFailed = "failed"
	// OutcomeRunning: the attempt is still awaiting its reply.
	OutcomeRunning = "running"
	// OutcomeInterrupted: something else happened before the attempt
	// reported back (the saga was cancelled, or it ended).
	OutcomeInterrupted = "interrupted"
)

// minBarWidth is the smallest width of a bar, in percent of the track, so
// that a 3ms attempt in a 2s saga stays visible and clickable.
const minBarWidth = 0.8

// Timeline is a saga's history laid out over time: one row per step that
// ran and one per compensation, each holding a bar per attempt. Positions
// are percentages of the track from Start to End, computed here so that
// the page needs no script to draw it.
type Timeline struct {
	// Start and End bound the track: the first record, and the last one
	// (or now, while the saga runs).
	Start, End time.Time
	// Rows are the steps and compensations, in the order they first ran.
	Rows []Row
	// Ticks label the time axis.
	Ticks []Tick
	// Markers are the saga-level events.
	Markers []Marker
}

// Row is one lane of the timeline.
type Row struct {
	// Label names the step ("ship-order") or its compensation ("undo
	// charge-payment").
	Label string
	// Kind is KindStep or KindCompensation.
	Kind string
	// Bars are the attempts, in order.
	Bars []Bar
	// Waits are the back-off delays between a failed attempt and the next.
	Waits []Wait
}

// Bar is one attempt.
type Bar struct {
	// Kind is KindStep or KindCompensation; Step names the step.
	Kind, Step string
	// Attempt counts from 1.
	Attempt int
	// Outcome is one of the Outcome constants.
	Outcome string
	// Start and End are when the attempt began and ended (or now).
	Start, End time.Time
	// Detail is what the history said about the outcome (an error, a
	// retry's delay).
	Detail string
	// Left and Width place the bar on the track, in percent.
	Left, Width float64
	// Label says where the bar's caption goes: LabelInside, LabelAfter,
	// LabelBefore, or LabelNone when neighbours leave no room (the
	// tooltip still has it).
	Label string
}

// Where a bar's caption goes.
const (
	LabelInside = "inside"
	LabelAfter  = "after"
	LabelBefore = "before"
	LabelNone   = "none"
)

// labelRoom is the track share, in percent, a caption outside its bar
// needs (about 90px of a 1000px track); labelInside is the width from
// which it fits inside.
const (
	labelRoom   = 9.0
	labelInside = 14.0
)

// Duration is how long the attempt took.
func (b Bar) Duration() time.Duration { return b.End.Sub(b.Start) }

// Wait is a back-off delay before a retry.
type Wait struct {
	Start, End  time.Time
	Left, Width float64
}

// Tick is a labelled position on the time axis.
type Tick struct {
	Left  float64
	Label string
}

// Marker is a saga-level event drawn across the track (started, cancel
// requested, completed, compensated, ...).
type Marker struct {
	Event string
	At    time.Time
	Left  float64
}

// BuildTimeline lays out history. now is the end of the track while the
// saga is not finished (terminal is false); a finished saga's track ends at
// its last record. The saga machine runs one attempt at a time, so an
// attempt still open when another one starts, or when the saga ends, is
// marked interrupted; while the saga runs, the last open one is running.
func BuildTimeline(history []workflows.Record, terminal bool, now time.Time) Timeline {
	var tl Timeline
	if len(history) == 0 {
		return tl
	}
	tl.Start = history[0].At
	tl.End = history[len(history)-1].At
	if !terminal && now.After(tl.End) {
		tl.End = now
	}

	rowIndex := map[string]int{} // kind + "/" + step -> index in tl.Rows
	row := func(kind, step string) int {
		k := kind + "/" + step
		i, ok := rowIndex[k]
		if !ok {
			label := step
			if kind == KindCompensation {
				label = "undo " + step
			}
			i = len(tl.Rows)
			rowIndex[k] = i
			tl.Rows = append(tl.Rows, Row{Label: label, Kind: kind})
		}
		return i
	}
	// The attempt in flight is bar openBar of row openRow (-1: none).
	openRow, openBar := -1, -1
	// retried holds, per row, when its last attempt ended in a scheduled
	// retry that has not started yet.
	retried := map[int]time.Time{}

	closeOpen := func(outcome, detail string, at time.Time) {
		if openRow < 0 {
			return
		}
		b := &tl.Rows[openRow].Bars[openBar]
		b.Outcome, b.Detail, b.End = outcome, detail, at
		if outcome == OutcomeRetry {
			retried[openRow] = at
		}
		openRow, openBar = -1, -1
	}
	start := func(kind string, r workflows.Record) {
		closeOpen(OutcomeInterrupted, "", r.At)
		i := row(kind, r.Step)
		rw := &tl.Rows[i]
		if since, ok := retried[i]; ok {
			rw.Waits = append(rw.Waits, Wait{Start: since, End: r.At})
			delete(retried, i)
		}
		rw.Bars = append(rw.Bars, Bar{Kind: kind, Step: r.Step, Attempt: r.Attempt, Outcome: OutcomeRunning, Start: r.At, End: r.At})
		openRow, openBar = i, len(rw.Bars)-1
	}
	// finish ends the attempt of kind at step: the open one, or an instant
	// one (a local step records only its outcome).
	finish := func(kind string, r workflows.Record, outcome string) {
		if openRow >= 0 && tl.Rows[openRow].Kind == kind && tl.Rows[openRow].Bars[openBar].Step == r.Step {
			closeOpen(outcome, r.Detail, r.At)
			return
		}
		start(kind, r)
		closeOpen(outcome, r.Detail, r.At)
	}

	for _, r := range history {
		switch r.Event {
		case workflows.EventStepStarted:
			start(KindStep, r)
		case workflows.EventStepSucceeded:
			finish(KindStep, r, OutcomeSucceeded)
		case workflows.EventStepRetryScheduled:
			finish(KindStep, r, OutcomeRetry)
		case workflows.EventStepFailed:
			finish(KindStep, r, OutcomeFailed)
		case workflows.EventCompensationStarted:
			start(KindCompensation, r)
		case workflows.EventCompensationSucceeded:
			finish(KindCompensation, r, OutcomeSucceeded)
		case workflows.EventCompensationRetry:
			finish(KindCompensation, r, OutcomeRetry)
		case workflows.EventNeedsAttention:
			closeOpen(OutcomeFailed, r.Detail, r.At)
			tl.Markers = append(tl.Markers, Marker{Event: r.Event, At: r.At})
		case workflows.EventStarted, workflows.EventCancelRequested:
			tl.Markers = append(tl.Markers, Marker{Event: r.Event, At: r.At})
		case workflows.EventCompleted, workflows.EventCompensated, workflows.EventCancelled:
			closeOpen(OutcomeInterrupted, "", r.At)
			tl.Markers = append(tl.Markers, Marker{Event: r.Event, At: r.At})
		case workflows.EventTimerRearmed:
		default:
			// Other saga-level events (an operator's retry, a signal) are
			// marked on the track too.
			if strings.HasPrefix(r.Event, "saga.") {
				tl.Markers = append(tl.Markers, Marker{Event: r.Event, At: r.At})
			}
		}
	}
	if openRow >= 0 {
		b := &tl.Rows[openRow].Bars[openBar]
		b.End = tl.End
		if terminal {
			b.Outcome = OutcomeInterrupted
		}
	}
	// A retry scheduled but not started yet waits until the end of the track.
	if !terminal {
		for i, since := range retried {
			tl.Rows[i].Waits = append(tl.Rows[i].Waits, Wait{Start: since, End: tl.End})
		}
	}
	tl.layout()
	return tl
}

// layout computes the percentages of every bar, wait, marker and tick.
func (tl *Timeline) layout() {
	span := tl.End.Sub(tl.Start)
	if span <= 0 {
		span = time.Millisecond
		tl.End = tl.Start.Add(span)
	}
	pct := func(t time.Time) float64 {
		return clamp(100*float64(t.Sub(tl.Start))/float64(span), 0, 100)
	}
	for i := range tl.Rows {
		r := &tl.Rows[i]
		for j := range r.Bars {
			b := &r.Bars[j]
			b.Left = pct(b.Start)
			b.Width = max(pct(b.End)-b.Left, minBarWidth)
			if b.Left+b.Width > 100 {
				b.Left = 100 - b.Width
			}
		}
		for j := range r.Bars {
			b := &r.Bars[j]
			before, after := b.Left, 100-(b.Left+b.Width)
			if j > 0 {
				prev := r.Bars[j-1]
				before = b.Left - (prev.Left + prev.Width)
				if prev.Label == LabelAfter {
					before -= labelRoom
				}
			}
			if j+1 < len(r.Bars) {
				after = r.Bars[j+1].Left - (b.Left + b.Width)
			}
			switch {
			case b.Width >= labelInside:
				b.Label = LabelInside
			case after >= labelRoom:
				b.Label = LabelAfter
			case before >= labelRoom:
				b.Label = LabelBefore
			default:
				b.Label = LabelNone
			}
		}
		for j := range r.Waits {
			w := &r.Waits[j]
			w.Left = pct(w.Start)
			w.Width = max(pct(w.End)-w.Left, 0)
		}
	}
	for i := range tl.Markers {
		tl.Markers[i].Left = pct(tl.Markers[i].At)
	}
	step := tickStep(span)
	tl.Ticks = nil
	for d := time.Duration(0); d <= span; d += step {
		tl.Ticks = append(tl.Ticks, Tick{Left: pct(tl.Start.Add(d)), Label: "+" + FormatDuration(d)})
	}
}

// tickStep picks a round interval that puts four to ten ticks on span.
func tickStep(span time.Duration) time.Duration {
	for _, s := range []time.Duration{
		time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
		10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
		100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour,
		24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour, 30 * 24 * time.Hour,
	} {
		if span/s <= 8 {
			return s
		}
	}
	return span / 8
}

// FormatDuration writes d compactly for people: 0, 850µs, 12ms, 1.25s,
// 2m05s, 3h20m, 2d4h.
func FormatDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + FormatDuration(-d)
	case d == 0:
		return "0"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return trimZeros(fmt.Sprintf("%.2f", d.Seconds())) + "s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

func trimZeros(s string) string {
	for len(s) > 1 && s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	return s
}

func clamp(v, lo, hi float64) float64 {
	return min(max(v, lo), hi)
}
