package console

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/sagaflow/sagaflow/workflows"
)

// Bar kinds: a forward attempt of a step, an attempt of its
// compensation, or a step waiting for a signal, an event or a delay.
const (
	KindStep         = "step"
	KindCompensation = "compensation"
	KindWait         = "wait"
)

// Wait kinds: a back-off before a retry, or a pause while the circuit to
// the step's service is open.
const (
	WaitBackoff = "backoff"
	WaitPaused  = "paused"
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
	// Branch names the Parallel step the row is a branch of ("" when it
	// is none).
	Branch string
	// Bars are the attempts, in order.
	Bars []Bar
	// Waits are the back-off delays between a failed attempt and the
	// next, and the pauses while the step's circuit was open.
	Waits []Wait
	// Marks are what happened to the step between bars: a signal or event
	// received or refused, the branch an If took, its abandonment.
	Marks []Mark
}

// Mark is an instant event of one step, drawn on its row.
type Mark struct {
	Event, Detail string
	At            time.Time
	Left          float64
}

// Bar is one attempt.
type Bar struct {
	// Kind is KindStep, KindCompensation or KindWait; Step names the step.
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

// Wait is a back-off delay before a retry, or a pause.
type Wait struct {
	// Kind is WaitBackoff or WaitPaused.
	Kind        string
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
// its last record. Outside a Parallel step the saga runs one attempt at a
// time, so an attempt still open when another one starts, or when the
// saga ends, is marked interrupted; while the saga runs, the last open one
// is running. The branches of a Parallel step run side by side, each on
// its own row (Row.Branch names the Parallel step), until the step ends.
// A step that waits for a signal, an event or a delay gets a KindWait
// bar; a step held back by an open circuit (step.paused) gets a paused
// Wait until its next attempt; what a waiting step received is a Mark on
// its row.
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
	b := &timelineBuilder{tl: &tl, rowIndex: map[string]int{}, open: map[int]int{}, retried: map[int]time.Time{}, paused: map[int]time.Time{}, parallel: -1}
	for _, r := range history {
		b.add(r)
	}
	for i, j := range b.open {
		bar := &tl.Rows[i].Bars[j]
		bar.End = tl.End
		if terminal {
			bar.Outcome = OutcomeInterrupted
		}
	}
	// A retry scheduled but not started yet waits until the end of the
	// track, and so does a pause.
	if !terminal {
		for i, since := range b.retried {
			tl.Rows[i].Waits = append(tl.Rows[i].Waits, Wait{Kind: WaitBackoff, Start: since, End: tl.End})
		}
	}
	for i := range b.paused {
		b.endPause(i, tl.End)
	}
	tl.layout()
	return tl
}

// timelineBuilder holds BuildTimeline's working state.
type timelineBuilder struct {
	tl       *Timeline
	rowIndex map[string]int // kind + "/" + step -> index in tl.Rows
	// open maps a row to its attempt in flight (an index in its Bars).
	open map[int]int
	// retried holds, per row, when its last attempt ended in a scheduled
	// retry that has not started yet; paused, since when it is paused.
	retried, paused map[int]time.Time
	// parallel is the row of the Parallel step running (-1: none);
	// parallelAll is true when its mode is all (one failed branch fails it).
	parallel    int
	parallelAll bool
}

// parallelStart tells the start of a Parallel step from a command step's:
// its detail is "N branches, mode".
var parallelStart = regexp.MustCompile(`^[0-9]+ branches, (.*)$`)

// endParallel ends the Parallel step running, if any, with outcome: the
// saga stopped it (cancel, deadline) or one of its branches failed it.
func (b *timelineBuilder) endParallel(outcome, detail string, at time.Time) {
	if b.parallel >= 0 {
		b.closeRow(b.parallel, outcome, detail, at)
	}
}

func (b *timelineBuilder) row(kind, step string) int {
	k := kind + "/" + step
	i, ok := b.rowIndex[k]
	if !ok {
		label := step
		if kind == KindCompensation {
			label = "undo " + step
		}
		i = len(b.tl.Rows)
		b.rowIndex[k] = i
		rw := Row{Label: label, Kind: kind}
		if b.parallel >= 0 {
			rw.Branch = b.tl.Rows[b.parallel].Bars[0].Step
		}
		b.tl.Rows = append(b.tl.Rows, rw)
	}
	return i
}

// closeRow ends row i's attempt in flight, if any.
func (b *timelineBuilder) closeRow(i int, outcome, detail string, at time.Time) {
	j, ok := b.open[i]
	if !ok {
		return
	}
	bar := &b.tl.Rows[i].Bars[j]
	bar.Outcome, bar.Detail, bar.End = outcome, detail, at
	if outcome == OutcomeRetry {
		b.retried[i] = at
	}
	delete(b.open, i)
	if i == b.parallel {
		b.parallel = -1
	}
}

// closeOthers interrupts every attempt in flight but row i's, unless a
// Parallel step runs: its branches go on side by side.
func (b *timelineBuilder) closeOthers(i int, at time.Time) {
	if b.parallel >= 0 {
		return
	}
	for k := range b.open {
		if k != i {
			b.closeRow(k, OutcomeInterrupted, "", at)
		}
	}
	for k := range b.paused {
		if k != i {
			b.endPause(k, at)
		}
	}
}

func (b *timelineBuilder) endPause(i int, at time.Time) {
	since, ok := b.paused[i]
	if !ok {
		return
	}
	rw := &b.tl.Rows[i]
	rw.Waits = append(rw.Waits, Wait{Kind: WaitPaused, Start: since, End: at})
	delete(b.paused, i)
}

// start opens a bar of kind on row i for record r.
func (b *timelineBuilder) start(i int, kind string, r workflows.Record) {
	b.closeOthers(i, r.At)
	b.closeRow(i, OutcomeInterrupted, "", r.At)
	rw := &b.tl.Rows[i]
	if since, ok := b.retried[i]; ok {
		rw.Waits = append(rw.Waits, Wait{Kind: WaitBackoff, Start: since, End: r.At})
		delete(b.retried, i)
	}
	b.endPause(i, r.At)
	bar := Bar{Kind: kind, Step: r.Step, Attempt: r.Attempt, Outcome: OutcomeRunning, Start: r.At, End: r.At}
	if kind == KindWait {
		bar.Detail = r.Detail
	}
	rw.Bars = append(rw.Bars, bar)
	b.open[i] = len(rw.Bars) - 1
}

// finish ends the attempt on row kind/step: the open one, or an instant
// one (a local step records only its outcome).
func (b *timelineBuilder) finish(kind string, r workflows.Record, outcome string) {
	i := b.row(kind, r.Step)
	if _, ok := b.open[i]; !ok {
		b.start(i, kind, r)
	}
	detail := r.Detail
	if bar := b.tl.Rows[i].Bars[b.open[i]]; bar.Kind == KindWait && detail == "" {
		detail = bar.Detail
	}
	b.closeRow(i, outcome, detail, r.At)
}

// pauseRow is the row a step.paused record belongs to: the step's
// compensation once its forward attempts are over, else the step.
func (b *timelineBuilder) pauseRow(step string) int {
	if i, ok := b.rowIndex[KindCompensation+"/"+step]; ok {
		return i
	}
	if fwd, ok := b.rowIndex[KindStep+"/"+step]; ok {
		_, running := b.open[fwd]
		_, retrying := b.retried[fwd]
		_, paused := b.paused[fwd]
		if len(b.tl.Rows[fwd].Bars) > 0 && !running && !retrying && !paused {
			return b.row(KindCompensation, step)
		}
	}
	return b.row(KindStep, step)
}

func (b *timelineBuilder) mark(i int, r workflows.Record) {
	rw := &b.tl.Rows[i]
	rw.Marks = append(rw.Marks, Mark{Event: r.Event, Detail: r.Detail, At: r.At})
}

func (b *timelineBuilder) add(r workflows.Record) {
	tl := b.tl
	switch r.Event {
	case workflows.EventStepStarted:
		i := b.row(KindStep, r.Step)
		b.start(i, KindStep, r)
		if m := parallelStart.FindStringSubmatch(r.Detail); b.parallel < 0 && m != nil {
			b.parallel, b.parallelAll = i, m[1] == string(workflows.All)
		}
	case workflows.EventStepWaiting:
		b.start(b.row(KindStep, r.Step), KindWait, r)
	case workflows.EventStepSucceeded:
		b.finish(KindStep, r, OutcomeSucceeded)
	case workflows.EventStepRetryScheduled:
		b.finish(KindStep, r, OutcomeRetry)
	case workflows.EventStepFailed:
		i, branch := b.row(KindStep, r.Step), b.parallel >= 0 && b.tl.Rows[b.parallel].Bars[0].Step != r.Step
		b.finish(KindStep, r, OutcomeFailed)
		if branch && b.parallelAll {
			b.endParallel(OutcomeFailed, fmt.Sprintf("branch %s failed", tl.Rows[i].Label), r.At)
		}
	case workflows.EventStepAbandoned:
		i := b.row(KindStep, r.Step)
		b.closeRow(i, OutcomeInterrupted, r.Detail, r.At)
		b.endPause(i, r.At)
		b.mark(i, r)
	case workflows.EventStepPaused:
		i := b.pauseRow(r.Step)
		if since, ok := b.retried[i]; ok {
			tl.Rows[i].Waits = append(tl.Rows[i].Waits, Wait{Kind: WaitBackoff, Start: since, End: r.At})
			delete(b.retried, i)
		}
		if _, ok := b.paused[i]; !ok {
			b.paused[i] = r.At
		}
	case workflows.EventCompensationStarted:
		b.start(b.row(KindCompensation, r.Step), KindCompensation, r)
	case workflows.EventCompensationSucceeded:
		b.finish(KindCompensation, r, OutcomeSucceeded)
	case workflows.EventCompensationRetry:
		b.finish(KindCompensation, r, OutcomeRetry)
	case workflows.EventNeedsAttention:
		for i := range b.open {
			b.closeRow(i, OutcomeFailed, r.Detail, r.At)
		}
		tl.Markers = append(tl.Markers, Marker{Event: r.Event, At: r.At})
	case workflows.EventStarted:
		tl.Markers = append(tl.Markers, Marker{Event: r.Event, At: r.At})
	case workflows.EventCancelRequested, workflows.EventDeadlinePassed:
		// A running saga abandons its forward work; a compensating one
		// goes on compensating.
		b.endParallel(OutcomeInterrupted, "", r.At)
		for i := range b.open {
			if tl.Rows[i].Kind == KindStep {
				b.closeRow(i, OutcomeInterrupted, "", r.At)
				b.endPause(i, r.At)
			}
		}
		tl.Markers = append(tl.Markers, Marker{Event: r.Event, At: r.At})
	case workflows.EventCompleted, workflows.EventCompensated, workflows.EventCancelled:
		b.parallel = -1
		b.closeOthers(-1, r.At)
		tl.Markers = append(tl.Markers, Marker{Event: r.Event, At: r.At})
	case workflows.EventTimerRearmed:
	case workflows.EventBranchTaken:
		b.mark(b.row(KindStep, r.Step), r)
	default:
		switch {
		case r.Step != "" && strings.HasPrefix(r.Event, "saga."):
			// What a waiting step received (a signal, an event, one
			// its Match refused) is marked on the step's row.
			b.mark(b.row(KindStep, r.Step), r)
		case strings.HasPrefix(r.Event, "saga."):
			// Other saga-level events (an operator's retry, a signal
			// kept for later, the deadline, a child's end report) are
			// marked on the track.
			tl.Markers = append(tl.Markers, Marker{Event: r.Event, At: r.At})
		}
	}
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
		for j := range r.Marks {
			r.Marks[j].Left = pct(r.Marks[j].At)
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
