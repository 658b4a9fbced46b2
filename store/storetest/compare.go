package storetest

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

// comparer compares store values field by field and names every field that
// differs. Times are equal when they are equal after truncation to prec;
// nil and empty slices and maps are equal.
type comparer struct {
	prec time.Duration
}

// diffs collects differences as "path: got X, want Y".
type diffs []string

func (d *diffs) add(path string, got, want any) {
	*d = append(*d, fmt.Sprintf("%s: got %s, want %s", path, show(got), show(want)))
}

// show formats v for a diff: strings quoted, everything else with field
// names.
func show(v any) string {
	switch v := v.(type) {
	case string, []string, map[string]string:
		return fmt.Sprintf("%q", v)
	default:
		return fmt.Sprintf("%+v", v)
	}
}

func eq[T comparable](d *diffs, path string, got, want T) {
	if got != want {
		d.add(path, got, want)
	}
}

func (c comparer) time(d *diffs, path string, got, want time.Time) {
	if !got.Truncate(c.prec).Equal(want.Truncate(c.prec)) {
		d.add(path, got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
	}
}

func (c comparer) envelope(d *diffs, path string, got, want message.Envelope) {
	eq(d, path+".ID", got.ID, want.ID)
	eq(d, path+".Kind", got.Kind, want.Kind)
	eq(d, path+".Type", got.Type, want.Type)
	eq(d, path+".Source", got.Source, want.Source)
	eq(d, path+".Destination", got.Destination, want.Destination)
	eq(d, path+".Key", got.Key, want.Key)
	eq(d, path+".SagaID", got.SagaID, want.SagaID)
	eq(d, path+".CorrelationID", got.CorrelationID, want.CorrelationID)
	eq(d, path+".CausationID", got.CausationID, want.CausationID)
	eq(d, path+".Sequence", got.Sequence, want.Sequence)
	c.time(d, path+".OccurredAt", got.OccurredAt, want.OccurredAt)
	if !maps.Equal(got.Headers, want.Headers) {
		d.add(path+".Headers", got.Headers, want.Headers)
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		d.add(path+".Payload", string(got.Payload), string(want.Payload))
	}
}

func (c comparer) envelopes(d *diffs, path string, got, want []message.Envelope) {
	if len(got) != len(want) {
		d.add(path+" length", len(got), len(want))
		return
	}
	for i := range want {
		c.envelope(d, fmt.Sprintf("%s[%d]", path, i), got[i], want[i])
	}
}

func (c comparer) timer(d *diffs, path string, got, want store.Timer) {
	eq(d, path+".ID", got.ID, want.ID)
	eq(d, path+".Stream", got.Stream, want.Stream)
	c.time(d, path+".DueAt", got.DueAt, want.DueAt)
	c.envelope(d, path+".Message", got.Message, want.Message)
}

func (c comparer) meta(d *diffs, path string, got, want store.Meta) {
	eq(d, path+".Kind", got.Kind, want.Kind)
	eq(d, path+".Type", got.Type, want.Type)
	eq(d, path+".Status", got.Status, want.Status)
	eq(d, path+".CorrelationID", got.CorrelationID, want.CorrelationID)
	c.time(d, path+".CreatedAt", got.CreatedAt, want.CreatedAt)
	c.time(d, path+".UpdatedAt", got.UpdatedAt, want.UpdatedAt)
}

func (c comparer) commit(d *diffs, path string, got, want store.Commit) {
	eq(d, path+".Stream", got.Stream, want.Stream)
	eq(d, path+".Version", got.Version, want.Version)
	c.envelopes(d, path+".Events", got.Events, want.Events)
	c.envelopes(d, path+".Outbox", got.Outbox, want.Outbox)
	if !slices.Equal(got.Handled, want.Handled) {
		d.add(path+".Handled", got.Handled, want.Handled)
	}
	if len(got.Timers) != len(want.Timers) {
		d.add(path+".Timers length", len(got.Timers), len(want.Timers))
	} else {
		for i := range want.Timers {
			c.timer(d, fmt.Sprintf("%s.Timers[%d]", path, i), got.Timers[i], want.Timers[i])
		}
	}
	if !slices.Equal(got.CancelTimers, want.CancelTimers) {
		d.add(path+".CancelTimers", got.CancelTimers, want.CancelTimers)
	}
	switch {
	case got.Meta == nil && want.Meta == nil:
	case got.Meta == nil || want.Meta == nil:
		d.add(path+".Meta", got.Meta, want.Meta)
	default:
		c.meta(d, path+".Meta", *got.Meta, *want.Meta)
	}
	c.time(d, path+".At", got.At, want.At)
}

func (c comparer) outboxEntry(d *diffs, path string, got, want store.OutboxEntry) {
	eq(d, path+".ID", got.ID, want.ID)
	eq(d, path+".Stream", got.Stream, want.Stream)
	eq(d, path+".Version", got.Version, want.Version)
	c.envelope(d, path+".Message", got.Message, want.Message)
	c.time(d, path+".At", got.At, want.At)
}

func (c comparer) info(d *diffs, path string, got, want store.StreamInfo) {
	eq(d, path+".Stream", got.Stream, want.Stream)
	eq(d, path+".Version", got.Version, want.Version)
	c.meta(d, path+".Meta", got.Meta, want.Meta)
}

// report fails t with every difference, if there are any.
func report(t *testing.T, what string, d diffs) {
	t.Helper()
	if len(d) == 0 {
		return
	}
	const maxShown = 20
	shown := d[:min(len(d), maxShown)]
	more := ""
	if len(d) > maxShown {
		more = fmt.Sprintf("\n\t... and %d more", len(d)-maxShown)
	}
	t.Fatalf("%s differs:\n\t%s%s", what, strings.Join(shown, "\n\t"), more)
}

// requireCommits checks got against want, commit by commit, field by field.
func (c comparer) requireCommits(t *testing.T, what string, got, want []store.Commit) {
	t.Helper()
	var d diffs
	if len(got) != len(want) {
		d.add("number of commits", versions(got), versions(want))
	} else {
		for i := range want {
			c.commit(&d, fmt.Sprintf("[%d]", i), got[i], want[i])
		}
	}
	report(t, what, d)
}

func (c comparer) requireOutbox(t *testing.T, what string, got, want []store.OutboxEntry) {
	t.Helper()
	var d diffs
	if len(got) != len(want) {
		d.add("entries", ids(got, outboxID), ids(want, outboxID))
	} else {
		for i := range want {
			c.outboxEntry(&d, fmt.Sprintf("[%d]", i), got[i], want[i])
		}
	}
	report(t, what, d)
}

func (c comparer) requireTimers(t *testing.T, what string, got, want []store.Timer) {
	t.Helper()
	var d diffs
	if len(got) != len(want) {
		d.add("timers", ids(got, timerID), ids(want, timerID))
	} else {
		for i := range want {
			c.timer(&d, fmt.Sprintf("[%d]", i), got[i], want[i])
		}
	}
	report(t, what, d)
}

func (c comparer) requireInfos(t *testing.T, what string, got, want []store.StreamInfo) {
	t.Helper()
	var d diffs
	if len(got) != len(want) {
		d.add("streams", ids(got, streamName), ids(want, streamName))
	} else {
		for i := range want {
			c.info(&d, fmt.Sprintf("[%d]", i), got[i], want[i])
		}
	}
	report(t, what, d)
}

func versions(cs []store.Commit) []uint64 {
	out := make([]uint64, len(cs))
	for i, c := range cs {
		out[i] = c.Version
	}
	return out
}
