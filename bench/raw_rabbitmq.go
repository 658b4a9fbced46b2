package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// rawRabbit measures persistent request/reply over RabbitMQ with amqp091-go
// directly, the way sagaflow's transport moves a command and its reply:
// durable quorum queues, persistent messages, each publish awaited through
// a publisher confirm, manual acks. One round trip is a request published
// and confirmed, consumed by the responder, a reply published and
// confirmed, the request acked, the reply consumed and acked: two
// persistent messages.
type rawRabbit struct {
	url  string
	name string // queue and connection names of this run
	dur  time.Duration
}

// body is the message body: about the size of an encoded saga command.
var body = []byte(`{"id":"` + strings.Repeat("x", 36) + `","payload":"` + strings.Repeat("y", 600) + `"}`)

func (r rawRabbit) run(ctx context.Context) *RabbitResult {
	res := &RabbitResult{Status: StatusOK}
	client, err := dialAMQP(r.url, r.name+"-client")
	if err != nil {
		res.Status = unavailable(err)
		return res
	}
	defer client.Close()
	server, err := dialAMQP(r.url, r.name+"-server")
	if err != nil {
		res.Status = unavailable(err)
		return res
	}
	defer server.Close()

	reqQ, repQ := r.name+".requests", r.name+".replies"
	if err := declareQuorum(client, reqQ, repQ); err != nil {
		res.Status = failed(err)
		return res
	}
	defer deleteQueues(r.url, reqQ, repQ)

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	if err := startResponder(rctx, &wg, server, reqQ, repQ, 16); err != nil {
		res.Status = failed(err)
		return res
	}
	req, err := newRequester(rctx, &wg, client, reqQ, repQ)
	if err != nil {
		res.Status = failed(err)
		return res
	}
	for _, inFlight := range []int{1, 16} {
		rate, p50, err := req.measure(rctx, inFlight, r.dur)
		if err != nil {
			res.Status = failed(fmt.Errorf("%d in flight: %w", inFlight, err))
			return res
		}
		if inFlight == 1 {
			res.RoundTrips1, res.P50At1 = rate, millis(p50)
		} else {
			res.RoundTrips16 = rate
		}
	}
	return res
}

func dialAMQP(url, name string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	c, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(10 * time.Second), Properties: props})
	if err != nil {
		return nil, fmt.Errorf("dial RabbitMQ: %w", err)
	}
	return c, nil
}

func declareQuorum(conn *amqp.Connection, names ...string) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	for _, n := range names {
		if _, err := ch.QueueDeclare(n, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
			return fmt.Errorf("declare quorum queue %s: %w", n, err)
		}
	}
	return nil
}

// deleteQueues deletes the queues on a connection of its own (the
// measurement's may be closing).
func deleteQueues(url string, names ...string) {
	conn, err := dialAMQP(url, "sagaflow-bench-cleanup")
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	defer ch.Close()
	for _, n := range names {
		_, _ = ch.QueueDelete(n, false, false, false)
	}
}

// startResponder consumes requests with workers goroutines: each publishes
// the reply persistently, awaits its confirm, then acks the request.
func startResponder(ctx context.Context, wg *sync.WaitGroup, conn *amqp.Connection, reqQ, repQ string, workers int) error {
	sub, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("responder: open channel: %w", err)
	}
	if err := sub.Qos(workers*4, 0, false); err != nil {
		return fmt.Errorf("responder: qos: %w", err)
	}
	deliveries, err := sub.ConsumeWithContext(ctx, reqQ, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("responder: consume %s: %w", reqQ, err)
	}
	pub, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("responder: open channel: %w", err)
	}
	if err := pub.Confirm(false); err != nil {
		return fmt.Errorf("responder: confirm mode: %w", err)
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case d, ok := <-deliveries:
					if !ok {
						return
					}
					if err := publishConfirmed(ctx, pub, repQ, d.CorrelationId); err != nil {
						_ = d.Nack(false, true)
						continue
					}
					_ = d.Ack(false)
				}
			}
		}()
	}
	return nil
}

// publishConfirmed publishes body persistently to queue and waits for the
// broker's confirm (at most 10s).
func publishConfirmed(ctx context.Context, ch *amqp.Channel, queue, correlationID string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, amqp.Publishing{
		DeliveryMode: amqp.Persistent, ContentType: "application/json", CorrelationId: correlationID, Body: body,
	})
	if err != nil {
		return fmt.Errorf("publish to %s: %w", queue, err)
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("confirm of publish to %s: %w", queue, err)
	}
	if !ok {
		return fmt.Errorf("publish to %s: nacked by the broker", queue)
	}
	return nil
}

// requester sends requests and matches replies by correlation ID.
type requester struct {
	pub     *amqp.Channel
	reqQ    string
	seq     atomic.Uint64
	mu      sync.Mutex
	waiting map[string]chan struct{}
}

func newRequester(ctx context.Context, wg *sync.WaitGroup, conn *amqp.Connection, reqQ, repQ string) (*requester, error) {
	pub, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("requester: open channel: %w", err)
	}
	if err := pub.Confirm(false); err != nil {
		return nil, fmt.Errorf("requester: confirm mode: %w", err)
	}
	sub, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("requester: open channel: %w", err)
	}
	if err := sub.Qos(64, 0, false); err != nil {
		return nil, fmt.Errorf("requester: qos: %w", err)
	}
	replies, err := sub.ConsumeWithContext(ctx, repQ, "", false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("requester: consume %s: %w", repQ, err)
	}
	r := &requester{pub: pub, reqQ: reqQ, waiting: make(map[string]chan struct{})}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case d, ok := <-replies:
				if !ok {
					return
				}
				_ = d.Ack(false)
				r.mu.Lock()
				w := r.waiting[d.CorrelationId]
				delete(r.waiting, d.CorrelationId)
				r.mu.Unlock()
				if w != nil {
					close(w)
				}
			}
		}
	}()
	return r, nil
}

// roundTrip sends one request and waits for its reply (at most 10s).
func (r *requester) roundTrip(ctx context.Context) error {
	id := strconv.FormatUint(r.seq.Add(1), 10)
	w := make(chan struct{})
	r.mu.Lock()
	r.waiting[id] = w
	r.mu.Unlock()
	if err := publishConfirmed(ctx, r.pub, r.reqQ, id); err != nil {
		return err
	}
	select {
	case <-w:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
		return errors.New("no reply within 10s")
	}
}

// measure runs inFlight loops of round trips for a short warm-up and then
// for d, and returns round trips/s and the median round trip.
func (r *requester) measure(ctx context.Context, inFlight int, d time.Duration) (float64, time.Duration, error) {
	warm := min(d/5, time.Second)
	start := time.Now()
	from, to := start.Add(warm), start.Add(warm+d)
	var (
		mu   sync.Mutex
		lat  []time.Duration
		n    int
		fail error
		wg   sync.WaitGroup
	)
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t0 := time.Now()
				if !t0.Before(to) {
					return
				}
				err := r.roundTrip(ctx)
				t1 := time.Now()
				mu.Lock()
				if err != nil {
					fail = err
				} else if !t0.Before(from) && t1.Before(to) {
					n++
					lat = append(lat, t1.Sub(t0))
				}
				stop := fail != nil
				mu.Unlock()
				if stop {
					return
				}
			}
		}()
	}
	wg.Wait()
	if fail != nil {
		return 0, 0, fail
	}
	slices.Sort(lat)
	return float64(n) / d.Seconds(), percentile(lat, 0.5), nil
}
