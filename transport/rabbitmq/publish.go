package rabbitmq

import (
	"context"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// pubChan is one confirm-mode publishing channel. Many goroutines publish
// on it at once: the library writes each publish's frames under its own
// lock, and each publisher waits for its own DeferredConfirmation. Returns
// of mandatory publishes are matched by message ID.
type pubChan struct {
	ch      *amqp.Channel
	returns chan amqp.Return
	barrier chan chan struct{} // the drainer closes each after draining returns
	dead    chan struct{}      // closed when the drainer ends

	mu      sync.Mutex
	pending map[string][]*pending // mandatory publishes awaiting their confirm
}

// pending is one mandatory publish; returned is the broker's reply text
// when it came back.
type pending struct{ returned string }

func (t *Transport) openPool() error {
	for range publishChannels {
		ch, err := t.pub.conn.Channel()
		if err != nil {
			return fmt.Errorf("rabbitmq %s: open publishing channel: %w", t.cfg.name, err)
		}
		if err := ch.Confirm(false); err != nil {
			return fmt.Errorf("rabbitmq %s: confirm mode: %w", t.cfg.name, err)
		}
		pc := &pubChan{
			ch:      ch,
			returns: ch.NotifyReturn(make(chan amqp.Return, 64)),
			barrier: make(chan chan struct{}),
			dead:    make(chan struct{}),
			pending: make(map[string][]*pending),
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			pc.drain(t.released)
		}()
		t.pool = append(t.pool, pc)
	}
	return nil
}

// drain records returns until the library closes the returns channel
// (when the channel or connection is closed for good). A barrier request
// is answered after every return already queued has been recorded.
func (pc *pubChan) drain(released <-chan struct{}) {
	defer close(pc.dead)
	for {
		select {
		case <-released:
			return
		case r, ok := <-pc.returns:
			if !ok {
				return
			}
			pc.record(r)
		case b := <-pc.barrier:
			for more := true; more; {
				select {
				case r, ok := <-pc.returns:
					if !ok {
						close(b)
						return
					}
					pc.record(r)
				default:
					more = false
				}
			}
			close(b)
		}
	}
}

func (pc *pubChan) record(r amqp.Return) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for _, p := range pc.pending[r.MessageId] {
		if p.returned == "" {
			p.returned = fmt.Sprintf("%d %s", r.ReplyCode, r.ReplyText)
			return
		}
	}
}

func (pc *pubChan) register(id string) *pending {
	p := &pending{}
	pc.mu.Lock()
	pc.pending[id] = append(pc.pending[id], p)
	pc.mu.Unlock()
	return p
}

func (pc *pubChan) unregister(id string, p *pending) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	list := pc.pending[id]
	for i, q := range list {
		if q == p {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(pc.pending, id)
	} else {
		pc.pending[id] = list
	}
}

// returned reports the broker's return text of p, after making sure every
// return the library received before the confirm has been recorded: the
// library hands a basic.return to the (buffered) returns channel before it
// processes the basic.ack that follows it.
func (pc *pubChan) returned(ctx context.Context, p *pending) (string, error) {
	b := make(chan struct{})
	select {
	case pc.barrier <- b:
		select {
		case <-b:
		case <-pc.dead:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	case <-pc.dead:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return p.returned, nil
}

// Publish validates e, encodes it, publishes it persistent and returns
// once the broker confirmed it. Commands and replies go to the direct
// exchange with key "<destination>.<partition>", mandatory: one that no
// queue takes fails with transport.ErrUnroutable. Events go to the topic
// exchange with key "<type>.<partition>"; one no queue is bound to is
// dropped by the broker without error. Publish waits (within ctx and the
// publish timeout) for a recovering or blocked connection, and fails with
// ErrNotConfirmed when the broker nacks or the connection is lost before
// the confirm.
func (t *Transport) Publish(ctx context.Context, e message.Envelope) error {
	if t.closed.Load() {
		return t.errClosed("publish " + e.ID)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rabbitmq: publish %s: %w", e.ID, err)
	}
	if err := e.Validate(); err != nil {
		return err
	}
	body, err := message.MarshalEnvelope(e, t.cfg.maxSize)
	if err != nil {
		return err
	}
	p := transport.Partition(e.Key, t.cfg.partitions)
	msg := amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    e.ID,
		Type:         e.Type,
		Timestamp:    time.Now(),
		Headers:      traceHeaders(e),
		Body:         body,
	}
	if e.Kind == message.KindEvent {
		err = t.publish(ctx, t.eventExchange(), eventKey(e.Type, p), false, msg)
	} else {
		err = t.publish(ctx, t.directExchange(), t.partitionQueue(e.Destination, p), true, msg)
	}
	if err != nil {
		return fmt.Errorf("rabbitmq: publish %s %s %s to %q: %w", e.Kind, e.Type, e.ID, e.Destination, err)
	}
	return nil
}

type publishResult struct {
	dc  *amqp.DeferredConfirmation
	err error
}

// publish sends msg on a pool channel and waits for its confirm (and, when
// mandatory, for its return).
func (t *Transport) publish(ctx context.Context, exchange, key string, mandatory bool, msg amqp.Publishing) error {
	if !t.enter() {
		return t.errClosed("publish")
	}
	defer t.ops.Done()
	ctx, cancel := context.WithTimeout(ctx, t.cfg.publishTimeout)
	defer cancel()
	if err := t.pub.await(ctx, true); err != nil {
		return err
	}
	_, changed := t.pub.snapshot(true)
	pc := t.pool[t.nextPub.Add(1)%uint64(len(t.pool))]
	var pd *pending
	if mandatory {
		pd = pc.register(msg.MessageId)
		defer pc.unregister(msg.MessageId, pd)
	}
	// The write itself is not context-aware and may block on a connection
	// the broker stopped reading from; it runs in its own goroutine so the
	// wait for it is bounded. Closing the connection ends it.
	res := make(chan publishResult, 1)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		dc, err := pc.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, mandatory, false, msg)
		res <- publishResult{dc, err}
	}()
	var r publishResult
	select {
	case r = <-res:
	case <-ctx.Done():
		return fmt.Errorf("%w: the write did not complete in time (blocked connection?): %w", ErrNotConfirmed, context.Cause(ctx))
	case <-t.stop:
		return t.errClosed("publish")
	}
	if r.err != nil {
		return fmt.Errorf("%w: %w", ErrNotConfirmed, r.err)
	}
	if r.dc == nil {
		return fmt.Errorf("%w: channel not in confirm mode", ErrNotConfirmed)
	}
	for waiting := true; waiting; {
		select {
		case <-r.dc.Done():
			waiting = false
		case <-changed:
			var err error
			err, changed = t.pub.snapshot(false)
			if err != nil {
				return fmt.Errorf("%w: connection lost before the confirm: %w", ErrNotConfirmed, err)
			}
		case <-ctx.Done():
			return fmt.Errorf("%w: no confirm in time: %w", ErrNotConfirmed, context.Cause(ctx))
		case <-t.stop:
			return t.errClosed("publish")
		}
	}
	if !r.dc.Acked() {
		return fmt.Errorf("%w: the broker nacked it (a queue is full) or the channel was reset", ErrNotConfirmed)
	}
	if mandatory {
		text, err := pc.returned(ctx, pd)
		if err != nil {
			return fmt.Errorf("%w: waiting for returns: %w", ErrNotConfirmed, err)
		}
		if text != "" {
			return fmt.Errorf("%w: returned by the broker (%s); declare the queue first", transport.ErrUnroutable, text)
		}
	}
	return nil
}
