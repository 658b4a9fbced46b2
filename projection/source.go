package projection

import (
	"context"
	"fmt"
	"strings"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

// Source is the local event store as a projection sees it: the public
// envelopes (or their absence) of the events recorded in a stream.
type Source struct {
	// Store is the event store.
	Store store.Streams
	// Registry decodes internal events and encodes public ones.
	Registry *message.Registry
	// Aggregates are the aggregate types whose streams are local.
	Aggregates []aggregate.Type
}

// streamEvent is one recorded event of a stream: its public envelope and
// decoded public payload when it is published, or published false.
type streamEvent struct {
	seq       uint64
	published bool
	env       message.Envelope
	event     any
}

// aggregateOf returns the local aggregate type of stream ("agg/<type>/<id>").
func (s *Source) aggregateOf(stream string) (aggregate.Type, bool) {
	rest, ok := strings.CutPrefix(stream, "agg/")
	if !ok {
		return nil, false
	}
	for _, t := range s.Aggregates {
		if strings.HasPrefix(rest, t.Name()+"/") {
			return t, true
		}
	}
	return nil, false
}

// events reads stream's recorded events with sequence in [from, to] and
// maps each to its public envelope, in order. A stream that is not local
// gives local false.
func (s *Source) events(ctx context.Context, stream string, from, to uint64) (evs []streamEvent, local bool, err error) {
	t, ok := s.aggregateOf(stream)
	if !ok || s.Store == nil {
		return nil, false, nil
	}
	commits, err := s.Store.Load(ctx, stream, 1)
	if err != nil {
		return nil, true, fmt.Errorf("load %s: %w", stream, err)
	}
	for _, c := range commits {
		for _, e := range c.Events {
			if e.Sequence < from || e.Sequence > to {
				continue
			}
			se, err := s.public(t, stream, c.Version, e)
			if err != nil {
				return nil, true, err
			}
			evs = append(evs, se)
		}
	}
	return evs, true, nil
}

func (s *Source) public(t aggregate.Type, stream string, commit uint64, e message.Envelope) (streamEvent, error) {
	internal, err := s.Registry.DecodeEnvelope(e)
	if err != nil {
		return streamEvent{}, fmt.Errorf("%s event %d: %w", stream, e.Sequence, err)
	}
	env, ok, err := aggregate.PublicEnvelope(s.Registry, t, stream, commit, e, internal)
	if err != nil || !ok {
		return streamEvent{seq: e.Sequence}, err
	}
	pub, err := s.Registry.DecodeEnvelope(env)
	if err != nil {
		return streamEvent{}, fmt.Errorf("%s event %d: public %s: %w", stream, e.Sequence, env.Type, err)
	}
	return streamEvent{seq: e.Sequence, published: true, env: env, event: pub}, nil
}

// StreamOf names the stream an event envelope belongs to: the stream
// header the aggregate actor sets, else "ext/<source>/<key>" for events
// published by others.
func StreamOf(e message.Envelope) string {
	if s := e.Header(aggregate.HeaderStream); s != "" {
		return s
	}
	return "ext/" + e.Source + "/" + e.Key
}
