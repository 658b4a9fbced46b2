// Package inbox subscribes a service to other services' public events and
// turns each into a command to one of its own aggregates: how a service
// keeps what it learns from others in its own event stream (the talk's
// "persist the info in the event stream"), instead of calling them.
//
// Delivery is at least once: an event is acked only after its command
// was published (I4), so a crash in between sends the command again.
// The commands carry the event's stream and sequence, and the aggregates
// that receive them ignore a sequence they have already seen, which makes
// the redelivery harmless (I3 at the business level).
package inbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// Event is what a translation learns about a public event.
type Event struct {
	// Key is the envelope's key (the subject, e.g. the customer ID).
	Key string
	// Stream is the stream the event was recorded in (the
	// sagaflow-stream header; else source/key) and Seq its sequence.
	Stream string
	Seq    uint64
	// Body is the decoded payload.
	Body any
}

// Translate maps an event to the command to send (service, key, body),
// or ok false to ignore the event.
type Translate func(ev Event) (service, key string, cmd any, ok bool)

// Sender sends a command; engine.Engine.Send fits.
type Sender func(ctx context.Context, service, key string, body any, headers map[string]string) (message.Envelope, error)

// Inbox is one subscription. Build it with New; Run consumes.
type Inbox struct {
	queue     string
	events    []string
	tr        transport.Transport
	reg       *message.Registry
	send      Sender
	translate Translate
	logger    *slog.Logger
}

// New returns an inbox on queue (its own queue name, e.g.
// "campaigns.inbox") that receives events of the given type names.
func New(tr transport.Transport, reg *message.Registry, queue string, events []string, send Sender, translate Translate, logger *slog.Logger) *Inbox {
	if logger == nil {
		logger = slog.Default()
	}
	return &Inbox{queue: queue, events: events, tr: tr, reg: reg, send: send, translate: translate, logger: logger}
}

// Declare makes the inbox's queue exist with its bindings. Call it before
// the events it must not miss are published.
func (in *Inbox) Declare(ctx context.Context) error {
	if len(in.events) == 0 {
		return fmt.Errorf("inbox %s: no event types", in.queue)
	}
	if err := in.tr.Declare(ctx, transport.Queue{Name: in.queue, Events: in.events}); err != nil {
		return fmt.Errorf("inbox %s: declare: %w", in.queue, err)
	}
	return nil
}

// Run declares the queue and consumes it until ctx ends.
func (in *Inbox) Run(ctx context.Context) error {
	if err := in.Declare(ctx); err != nil {
		return err
	}
	return in.tr.Consume(ctx, in.queue, 32, in.handle)
}

func (in *Inbox) handle(ctx context.Context, d transport.Delivery) {
	env := d.Envelope()
	body, err := in.reg.DecodeEnvelope(env)
	if err != nil {
		in.settle(ctx, d, func(c context.Context) error { return d.DeadLetter(c, fmt.Errorf("inbox %s: %w", in.queue, err)) })
		return
	}
	stream := env.Headers["sagaflow-stream"]
	if stream == "" {
		stream = "ext/" + env.Source + "/" + env.Key
	}
	service, key, cmd, ok := in.translate(Event{Key: env.Key, Stream: stream, Seq: env.Sequence, Body: body})
	if !ok {
		in.settle(ctx, d, d.Ack)
		return
	}
	if _, err := in.send(ctx, service, key, cmd, map[string]string{"inbox-event": env.ID}); err != nil {
		if errors.Is(err, context.Canceled) {
			return // the consumer stops; the transport redelivers
		}
		in.logger.Warn("inbox: send failed, retrying later", "queue", in.queue, "event", env.ID, "error", err)
		in.settle(ctx, d, func(c context.Context) error { return d.Retry(c, time.Second, err) })
		return
	}
	in.settle(ctx, d, d.Ack)
}

func (in *Inbox) settle(ctx context.Context, d transport.Delivery, f func(context.Context) error) {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := f(c); err != nil {
		in.logger.Warn("inbox: settle", "queue", in.queue, "message_id", d.Envelope().ID, "error", err)
	}
}
