package actors

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/workflows"
)

// This file holds the saga actor's part in the step kinds beyond command
// and local: starting child sagas, and routing events to the sagas that
// wait for them.

// eventScanBudget bounds the sagas read to find those with an event's
// correlation ID (the store does not index correlation IDs).
const eventScanBudget = 10_000

// routedNamespace makes the IDs of routed events: the same event routed
// to the same saga gets the same ID, so a redelivered event is recognised
// by the saga as handled (I3).
var routedNamespace = uuid.MustParse("6f1d2a0e-3c1b-4f3e-9a57-5b0d8c2e7a41")

// routeEvent hands an event that arrived on the saga queue (it is bound to
// the event types some workflow waits for) to the saga it concerns: the
// one named by its saga ID, or else the unfinished sagas with its
// correlation ID. An event that concerns no saga is parked with the
// reason. The event is acked once every copy was published.
func (s *sagaEntity) routeEvent(ctx context.Context, d transport.Delivery, ev message.Envelope) {
	targets, err := s.eventTargets(ctx, ev)
	if err != nil {
		s.deps.retryLater(d, err)
		return
	}
	if len(targets) == 0 {
		s.deps.deadLetter(d, fmt.Errorf("event %s (%s): no saga has saga ID %q or correlation ID %q", ev.ID, ev.Type, ev.SagaID, ev.CorrelationID))
		return
	}
	for _, id := range targets {
		m, err := s.deps.Registry.New(message.KindCommand, id, &workflows.RoutedEvent{Event: ev})
		if err != nil {
			s.deps.deadLetter(d, err)
			return
		}
		m.ID = uuid.NewSHA1(routedNamespace, []byte(ev.ID+"\x00"+id)).String()
		m.Destination, m.Source, m.SagaID, m.CorrelationID = s.deps.SagaQueue, s.deps.Source, id, ev.CorrelationID
		m.CausationID, m.OccurredAt, m.Headers = ev.ID, ev.OccurredAt, ev.Headers
		if err := s.deps.Transport.Publish(ctx, m); err != nil {
			s.deps.retryLater(d, fmt.Errorf("route event %s to saga %s: %w", ev.ID, id, err))
			return
		}
	}
	s.deps.ack(d)
}

func (s *sagaEntity) eventTargets(ctx context.Context, ev message.Envelope) ([]string, error) {
	if ev.SagaID != "" {
		return []string{ev.SagaID}, nil
	}
	if ev.CorrelationID == "" {
		return nil, nil
	}
	var ids []string
	after := ""
	for scanned := 0; scanned < eventScanBudget; {
		page, err := s.deps.Store.List(ctx, store.ListFilter{
			Kind: "saga", Status: []string{string(workflows.StatusRunning)}, After: after, Limit: 500,
		})
		if err != nil {
			return nil, fmt.Errorf("find sagas of correlation ID %q: %w", ev.CorrelationID, err)
		}
		for _, info := range page {
			if info.Meta.CorrelationID == ev.CorrelationID {
				ids = append(ids, info.Stream[len("saga/"):])
			}
		}
		scanned += len(page)
		if len(page) < 500 {
			break
		}
		after = page[len(page)-1].Stream
	}
	return ids, nil
}

// startChild creates the child saga that a parent's StartChild asks for,
// as StartSaga does, with the parent recorded so that the child reports
// its end. A child workflow that is not registered, or that refuses the
// input, answers the parent with a failure reply instead.
func (s *sagaEntity) startChild(ctx context.Context, d transport.Delivery, env message.Envelope, b *workflows.StartChild) {
	wf, ok := s.deps.Workflows(b.Workflow, 0)
	var dec workflows.Decision
	var err error
	if !ok {
		err = fmt.Errorf("child workflow %q is not registered", b.Workflow)
	} else {
		dec, err = workflows.StartAsChild(wf, s.deps.machineEnv(), s.id, env.CorrelationID, b.Input, workflows.ParentRef{ID: b.ParentID, ReplyTo: env.ID})
	}
	if err != nil {
		s.refuseChild(ctx, d, env, b, err)
		return
	}
	err = createSaga(ctx, s.deps, wf, dec, env.ID)
	if err != nil && !errors.Is(err, ErrSagaExists) {
		s.deps.retryLater(d, err)
		return
	}
	s.loaded = false
	s.deps.ack(d)
}

func (s *sagaEntity) refuseChild(ctx context.Context, d transport.Delivery, env message.Envelope, b *workflows.StartChild, cause error) {
	reply, err := s.deps.Registry.New(message.KindReply, b.ParentID, &message.Failure{Reason: fmt.Sprintf("start child saga %s: %v", s.id, cause)})
	if err != nil {
		s.deps.deadLetter(d, err)
		return
	}
	reply.Destination, reply.Source, reply.SagaID, reply.CorrelationID = s.deps.SagaQueue, s.deps.Source, b.ParentID, env.CorrelationID
	reply.CausationID, reply.OccurredAt = env.ID, s.deps.now()
	if err := s.deps.Transport.Publish(ctx, reply); err != nil {
		s.deps.retryLater(d, fmt.Errorf("refuse child saga %s: %w", s.id, err))
		return
	}
	s.deps.Logger.Warn("child saga refused", "saga_id", s.id, "parent_id", b.ParentID, "err", cause)
	s.deps.ack(d)
}
