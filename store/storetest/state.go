package storetest

import (
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"context"

	"github.com/sagaflow/sagaflow/store"
)

// state is everything a store shows about some streams and message IDs.
// Two states observed around a refused commit must be equal (I1), and so
// must two observed around a reopen.
type state struct {
	commits map[string][]store.Commit
	infos   map[string]*store.StreamInfo // nil: ErrNotFound
	handled map[string]uint64            // "stream|msgID" -> version; absent: not handled
	list    []store.StreamInfo
	outbox  []store.OutboxEntry
	timers  []store.Timer
	next    *time.Time // nil: no timer
}

// probe names what observe looks at.
type probe struct {
	streams []string
	handled [][2]string // {stream, message ID}
}

// observeLimit is the limit observe reads outbox entries and timers with;
// tests that observe stay well below it.
const observeLimit = 1000

func observe(t *testing.T, ctx context.Context, st store.Store, p probe) state {
	t.Helper()
	s := state{
		commits: map[string][]store.Commit{},
		infos:   map[string]*store.StreamInfo{},
		handled: map[string]uint64{},
	}
	for _, stream := range p.streams {
		s.commits[stream] = mustLoad(t, ctx, st, stream, 0)
		info, err := st.Info(ctx, stream)
		switch {
		case errors.Is(err, store.ErrNotFound):
			s.infos[stream] = nil
		case err != nil:
			t.Fatalf("Info(%s): %v", stream, err)
		default:
			s.infos[stream] = &info
		}
	}
	for _, h := range p.handled {
		v, ok, err := st.Handled(ctx, h[0], h[1])
		if err != nil {
			t.Fatalf("Handled(%s, %s): %v", h[0], h[1], err)
		}
		if ok {
			s.handled[h[0]+"|"+h[1]] = v
		}
	}
	list, err := st.List(ctx, store.ListFilter{Limit: observeLimit})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	s.list = list
	s.outbox = mustPending(t, ctx, st, farFuture, observeLimit)
	s.timers = mustDue(t, ctx, st, farFuture, observeLimit)
	next, ok, err := st.NextTimer(ctx)
	if err != nil {
		t.Fatalf("NextTimer: %v", err)
	}
	if ok {
		s.next = &next
	}
	return s
}

// requireSameState fails t when got differs from want anywhere.
func (c comparer) requireSameState(t *testing.T, what string, got, want state) {
	t.Helper()
	var d diffs
	for stream, wc := range want.commits {
		gc := got.commits[stream]
		if len(gc) != len(wc) {
			d.add("Load("+stream+") versions", versions(gc), versions(wc))
			continue
		}
		for i := range wc {
			c.commit(&d, fmt.Sprintf("Load(%s)[%d]", stream, i), gc[i], wc[i])
		}
	}
	for stream, wi := range want.infos {
		gi := got.infos[stream]
		switch {
		case gi == nil && wi == nil:
		case gi == nil || wi == nil:
			d.add("Info("+stream+")", gi, wi)
		default:
			c.info(&d, "Info("+stream+")", *gi, *wi)
		}
	}
	if !maps.Equal(got.handled, want.handled) {
		d.add("Handled", got.handled, want.handled)
	}
	if len(got.list) != len(want.list) {
		d.add("List", ids(got.list, streamName), ids(want.list, streamName))
	} else {
		for i := range want.list {
			c.info(&d, fmt.Sprintf("List[%d]", i), got.list[i], want.list[i])
		}
	}
	if len(got.outbox) != len(want.outbox) {
		d.add("PendingOutbox", ids(got.outbox, outboxID), ids(want.outbox, outboxID))
	} else {
		for i := range want.outbox {
			c.outboxEntry(&d, fmt.Sprintf("PendingOutbox[%d]", i), got.outbox[i], want.outbox[i])
		}
	}
	if len(got.timers) != len(want.timers) {
		d.add("DueTimers", ids(got.timers, timerID), ids(want.timers, timerID))
	} else {
		for i := range want.timers {
			c.timer(&d, fmt.Sprintf("DueTimers[%d]", i), got.timers[i], want.timers[i])
		}
	}
	switch {
	case got.next == nil && want.next == nil:
	case got.next == nil || want.next == nil:
		d.add("NextTimer", got.next, want.next)
	default:
		c.time(&d, "NextTimer", *got.next, *want.next)
	}
	report(t, what, d)
}
