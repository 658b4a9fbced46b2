package actors

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/telemetry"
	"github.com/sagaflow/sagaflow/transport"
)

// AggregateStream names the stream of aggregate id of type typeName.
func AggregateStream(typeName, id string) string {
	return "agg/" + typeName + "/" + id
}

// NewAggregateFactory returns the entity factory for aggregates of type t.
func NewAggregateFactory(deps *Deps, t aggregate.Type) EntityFactory {
	shared := &aggregateShared{deps: deps, typ: t}
	return func(key string) entity {
		return &aggregateEntity{aggregateShared: shared, id: key}
	}
}

// aggregateShared is what every aggregate entity of one type needs, kept
// once: an idle aggregate actor's entity is then 80 bytes, not 96.
type aggregateShared struct {
	deps *Deps
	typ  aggregate.Type
}

// aggregateEntity is one event-sourced aggregate: it folds its stream into
// state on first use, then decides each command and commits the events,
// the handled command ID and the reply together.
type aggregateEntity struct {
	*aggregateShared
	id      string
	loaded  bool
	state   any
	version uint64 // commits
	seq     uint64 // events
	epoch   uint64 // deps.forgetEpoch when loaded (see aggregate_load.go)
	// subjects whose personal data state holds (see aggregate_load.go).
	subjects map[string]struct{}
}

// stream names the aggregate's stream. It is made when needed, not kept:
// an idle actor then holds no copy of its key.
func (a *aggregateEntity) stream() string { return AggregateStream(a.typ.Name(), a.id) }

func (a *aggregateEntity) load(ctx context.Context) error {
	epoch := a.deps.forgetEpoch.Load()
	l, err := LoadAggregateAt(ctx, a.deps, a.typ, a.id, AggregatePoint{})
	if err != nil {
		return err
	}
	a.state, a.version, a.seq, a.loaded = l.State, l.Version, l.Seq, true
	a.epoch, a.subjects = epoch, l.Subjects
	return nil
}

func (a *aggregateEntity) handle(ctx context.Context, d transport.Delivery) {
	env := d.Envelope()
	ctx, span := a.deps.startAggregateSpan(a.deps.handlingContext(ctx, d, env.SagaID), a.typ, a.id, env)
	defer span.End()
	if env.Kind != message.KindCommand {
		a.deps.deadLetter(d, fmt.Errorf("aggregate %s accepts commands, got a %s of type %q", a.typ.Name(), env.Kind, env.Type))
		return
	}
	cmd, err := a.deps.Registry.DecodeEnvelope(env)
	if err != nil {
		a.deps.deadLetter(d, err)
		return
	}
	var lastErr error
	for attempt := 1; attempt <= a.deps.commitAttempts(); attempt++ {
		if attempt > 1 && !sleep(ctx, backoff(attempt-1)) {
			break
		}
		if !a.loaded || a.forgotten() {
			if lastErr = a.load(ctx); lastErr != nil {
				continue
			}
		}
		commit, events, err := a.decide(env, cmd)
		if err != nil {
			// Events that cannot be encoded or applied are a bug in the
			// aggregate: park the command rather than loop.
			a.deps.deadLetter(d, err)
			return
		}
		if lastErr = a.deps.seal(ctx, a.id, &commit.Commit); lastErr != nil {
			if errors.Is(lastErr, store.ErrInvalidKey) {
				a.deps.deadLetter(d, lastErr) // an unusable subject name
				return
			}
			continue
		}
		a.deps.stampMessages(ctx, commit.Outbox)
		lastErr = a.deps.Store.Append(ctx, commit.Commit)
		switch {
		case lastErr == nil:
			prevSeq := a.seq
			markRejection(span, commit.Outbox, len(events))
			a.version, a.seq = commit.Version, a.seq+uint64(len(events))
			a.state = commit.stateAfter
			a.deps.dispatch(ctx, commit.Outbox)
			a.deps.ack(d)
			a.snapshotAfterCommit(ctx, prevSeq, commit.Commit)
			return
		case errors.Is(lastErr, store.ErrAlreadyHandled):
			a.replayReply(ctx, env)
			a.deps.ack(d)
			return
		default:
			// A conflict (another node wrote) or a store error: reload
			// and decide again.
			a.loaded = false
		}
	}
	err = fmt.Errorf("aggregate %s %s: command %s not committed after %d attempts: %w", a.typ.Name(), a.id, env.ID, a.deps.commitAttempts(), lastErr)
	telemetry.RecordError(span, err)
	a.deps.retryLater(d, err)
}

// pendingCommit is a commit plus the state it leads to.
type pendingCommit struct {
	store.Commit
	stateAfter any
}

// decide runs the command and builds the commit: the events and the reply
// (success with the last event, or failure with the rejection).
func (a *aggregateEntity) decide(cmdEnv message.Envelope, cmd any) (pendingCommit, []any, error) {
	now := a.deps.now()
	pc := pendingCommit{Commit: store.Commit{
		Stream: a.stream(), Version: a.version + 1, Handled: []string{cmdEnv.ID}, At: now,
	}, stateAfter: a.state}
	if a.version == 0 {
		pc.Meta = &store.Meta{Kind: "aggregate", Type: a.typ.Name(), CreatedAt: now, UpdatedAt: now}
	}
	events, decideErr := a.typ.Decide(a.state, cmd)
	var reply any
	if decideErr != nil {
		reply = &message.Failure{Reason: decideErr.Error(), Retryable: aggregate.IsRetryable(decideErr)}
		events = nil
	}
	state := a.state
	for i, ev := range events {
		ev = pointerTo(ev)
		typeName, payload, err := a.deps.Registry.Encode(ev)
		if err != nil {
			return pendingCommit{}, nil, fmt.Errorf("aggregate %s: event %d of command %s: %w", a.typ.Name(), i, cmdEnv.Type, err)
		}
		if state, err = a.typ.Apply(state, ev); err != nil {
			return pendingCommit{}, nil, err
		}
		pc.Events = append(pc.Events, message.Envelope{
			ID: message.NewID(), Kind: message.KindEvent, Type: typeName, Source: a.typ.Service(),
			Key: a.id, SagaID: cmdEnv.SagaID, CorrelationID: cmdEnv.CorrelationID, CausationID: cmdEnv.ID,
			Sequence: a.seq + uint64(i) + 1, OccurredAt: now, Payload: payload,
		})
		// Only an explicit mapper turns an internal event into a public
		// one; it goes out through the same commit's outbox (I1).
		public, ok, err := aggregate.PublicEnvelope(a.deps.Registry, a.typ, a.stream(), pc.Version, pc.Events[len(pc.Events)-1], ev)
		if err != nil {
			return pendingCommit{}, nil, err
		}
		if ok {
			pc.Outbox = append(pc.Outbox, public)
		}
		reply = ev
	}
	pc.stateAfter = state
	if reply == nil {
		reply = &message.Accepted{}
	}
	if replyTo := cmdEnv.Header(message.HeaderReplyTo); replyTo != "" {
		typeName, payload, err := a.deps.Registry.Encode(reply)
		if err != nil {
			return pendingCommit{}, nil, fmt.Errorf("aggregate %s: reply to %s: %w", a.typ.Name(), cmdEnv.Type, err)
		}
		key := cmdEnv.SagaID
		if key == "" {
			key = cmdEnv.Key
		}
		pc.Outbox = append(pc.Outbox, message.Envelope{
			ID: message.NewID(), Kind: message.KindReply, Type: typeName, Source: a.typ.Service(),
			Destination: replyTo, Key: key, SagaID: cmdEnv.SagaID, CorrelationID: cmdEnv.CorrelationID,
			CausationID: cmdEnv.ID, OccurredAt: now, Payload: payload,
		})
	}
	return pc, events, nil
}

// replayReply re-publishes the reply recorded when the command was first
// handled, so a sender that lost it (a restarted saga) gets it again.
func (a *aggregateEntity) replayReply(ctx context.Context, cmdEnv message.Envelope) {
	version, ok, err := a.deps.Store.Handled(ctx, a.stream(), cmdEnv.ID)
	if err != nil || !ok {
		a.deps.Logger.WarnContext(ctx, "duplicate command: recorded reply not found", "stream", a.stream(), "message_id", cmdEnv.ID, "err", err)
		return
	}
	commits, err := a.deps.Store.Load(ctx, a.stream(), version)
	if err != nil || len(commits) == 0 {
		a.deps.Logger.WarnContext(ctx, "duplicate command: load of recorded reply failed", "stream", a.stream(), "version", version, "err", err)
		return
	}
	for _, m := range commits[0].Outbox {
		if m.Kind == message.KindReply && m.CausationID == cmdEnv.ID {
			if err := a.deps.Transport.Publish(ctx, m); err != nil {
				a.deps.Logger.WarnContext(ctx, "duplicate command: reply re-publish failed", "message_id", m.ID, "err", err)
			}
		}
	}
}

// pointerTo returns v as a pointer to a struct, copying a struct value.
func pointerTo(v any) any {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		return v
	}
	p := reflect.New(rv.Type())
	p.Elem().Set(rv)
	return p.Interface()
}
