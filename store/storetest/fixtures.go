package storetest

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

// base is the suite's fixed clock: a time with nanoseconds and a non-UTC
// zone, so that stores which drop either are caught (up to TimePrecision).
var base = time.Date(2031, time.March, 4, 5, 6, 7, 891234567, time.FixedZone("UTC+2", 2*60*60))

// farFuture is later than every time the fixtures use.
var farFuture = base.AddDate(50, 0, 0)

// at returns base + d.
func at(d time.Duration) time.Time { return base.Add(d) }

// payloadFor returns a compact JSON payload with non-ASCII text and the
// characters HTML escaping would rewrite; a store must give it back byte for
// byte.
func payloadFor(id string) json.RawMessage {
	return json.RawMessage(`{"id":"` + id + `","note":"grüße <b> & ✓","n":42,"x":2.5,"list":[1,null,true],"nested":{"k":"v"}}`)
}

// envelope returns a message with every field set. kind decides whether it
// carries a destination (commands and replies do).
func envelope(id string, kind message.Kind, key string, seq uint64, occurred time.Time) message.Envelope {
	e := message.Envelope{
		ID:            id,
		Kind:          kind,
		Type:          "storetest.Thing.v1",
		Source:        "storetest",
		Key:           key,
		SagaID:        "saga-" + key,
		CorrelationID: "corr-" + key,
		CausationID:   "cause-" + id,
		Sequence:      seq,
		OccurredAt:    occurred,
		Headers: map[string]string{
			message.HeaderTraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			message.HeaderTraceState:  "vendor=ü",
			"x-empty":                 "",
		},
		Payload: payloadFor(id),
	}
	if kind != message.KindEvent {
		e.Destination = "svc-" + key
	}
	return e
}

// fullCommit returns commit (stream, version) with every field set: two
// events, two outbox messages (a command and an event), a handled message,
// a timer and a Meta. tag keeps IDs unique when several writers build the
// same (stream, version). IDs are derived from stream, version and tag:
// see evtID, outID, inID and timerIDOf.
func fullCommit(stream string, version uint64, tag string) store.Commit {
	when := at(time.Duration(version) * time.Second)
	c := store.Commit{
		Stream:  stream,
		Version: version,
		Events: []message.Envelope{
			envelope(evtID(stream, version, tag, 0), message.KindEvent, stream, 2*version-1, when),
			envelope(evtID(stream, version, tag, 1), message.KindEvent, stream, 2*version, when),
		},
		Outbox: []message.Envelope{
			envelope(outID(stream, version, tag, 0), message.KindCommand, stream, 0, when),
			envelope(outID(stream, version, tag, 1), message.KindEvent, stream, 2*version, when),
		},
		Handled: []string{inID(stream, version, tag)},
		Timers: []store.Timer{{
			ID:      timerIDOf(stream, version, tag),
			Stream:  stream,
			DueAt:   when.Add(time.Hour),
			Message: envelope("fire-"+timerIDOf(stream, version, tag), message.KindCommand, stream, 0, when),
		}},
		Meta: &store.Meta{
			Kind:          "saga",
			Type:          "storetest.Flow",
			Status:        "running",
			CorrelationID: "corr-" + stream,
			CreatedAt:     base,
			UpdatedAt:     when,
		},
		At: when,
	}
	return c
}

// bareCommit returns commit (stream, version) with one event and nothing
// else.
func bareCommit(stream string, version uint64, tag string) store.Commit {
	when := at(time.Duration(version) * time.Second)
	return store.Commit{
		Stream:  stream,
		Version: version,
		Events:  []message.Envelope{envelope(evtID(stream, version, tag, 0), message.KindEvent, stream, version, when)},
		At:      when,
	}
}

func evtID(stream string, v uint64, tag string, i int) string {
	return fmt.Sprintf("evt/%s/v%d/%s/%d", stream, v, tag, i)
}

func outID(stream string, v uint64, tag string, i int) string {
	return fmt.Sprintf("out/%s/v%d/%s/%d", stream, v, tag, i)
}

func inID(stream string, v uint64, tag string) string {
	return fmt.Sprintf("in/%s/v%d/%s", stream, v, tag)
}

func timerIDOf(stream string, v uint64, tag string) string {
	return fmt.Sprintf("timer/%s/v%d/%s", stream, v, tag)
}

// cloneCommit deep-copies c, so that a test can keep the original while it
// changes the copy (or the store is tempted to keep references).
func cloneCommit(c store.Commit) store.Commit {
	cloneEnvs := func(in []message.Envelope) []message.Envelope {
		if in == nil {
			return nil
		}
		out := make([]message.Envelope, len(in))
		for i, e := range in {
			out[i] = e.Clone()
		}
		return out
	}
	c.Events = cloneEnvs(c.Events)
	c.Outbox = cloneEnvs(c.Outbox)
	c.Handled = append([]string(nil), c.Handled...)
	if c.Timers != nil {
		ts := make([]store.Timer, len(c.Timers))
		for i, tm := range c.Timers {
			tm.Message = tm.Message.Clone()
			ts[i] = tm
		}
		c.Timers = ts
	}
	c.CancelTimers = append([]string(nil), c.CancelTimers...)
	if c.Meta != nil {
		m := *c.Meta
		c.Meta = &m
	}
	return c
}

// outboxEntriesOf returns the outbox entries c should produce.
func outboxEntriesOf(c store.Commit) []store.OutboxEntry {
	out := make([]store.OutboxEntry, len(c.Outbox))
	for i, m := range c.Outbox {
		out[i] = store.OutboxEntry{ID: m.ID, Stream: c.Stream, Version: c.Version, Message: m, At: c.At}
	}
	return out
}
