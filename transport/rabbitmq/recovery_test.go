package rabbitmq_test

import (
	"github.com/sagaflow/sagaflow/internal/testenv"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
)

// The recovery tests disturb the broker for everyone on it, so they are not
// parallel with anything: go test runs top-level tests one after another,
// and these do not call t.Parallel.

func TestRecoveryCloseAllConnections(t *testing.T) {
	testRecovery(t, "close_all_connections", false, closeAll)
}

// The backlog variants publish all 10,000 messages first and disturb the
// broker while a slowed-down consumer works through them.
func TestRecoveryBacklogCloseAllConnections(t *testing.T) {
	testRecovery(t, "backlog close_all_connections", true, closeAll)
}

func TestRecoveryBacklogStopStartApp(t *testing.T) {
	testRecovery(t, "backlog stop_app/start_app", true, stopStart)
}

func closeAll(t *testing.T) {
	testenv.RabbitMQCtl(t, 30*time.Second, "close_all_connections", "test")
}

func stopStart(t *testing.T) { testenv.RestartRabbitMQApp(t, 2*time.Second) }

func TestRecoveryStopStartApp(t *testing.T) {
	testRecovery(t, "stop_app/start_app", false, stopStart)
}

// testRecovery publishes 10,000 messages over many keys while a consumer
// records the IDs it handles (a map, so duplicates are absorbed) and acks
// them; when about a third is published, disturb breaks the broker's
// connections. Publishes that fail during the outage are retried by the
// test (bounded, counted). Every message must be handled; the transport
// must recover by itself and be Ready at the end.
func testRecovery(t *testing.T, what string, backlog bool, disturb func(t *testing.T)) {
	const (
		total      = 10_000
		keys       = 500
		publishers = 16
		maxTries   = 240 // 240 * 250ms = one minute per message at most
		partitions = 8
	)
	u := testenv.RabbitMQ(t)
	testenv.RabbitMQCtl(t, 30*time.Second, "await_startup", "--timeout", "30") // rabbitmqctl is there
	name := "sagaflow-rt-" + randomID(t)
	c := newCleaner(t, u, name, partitions)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	tr, err := rabbitmq.Dial(ctx, u,
		rabbitmq.WithName(name),
		rabbitmq.WithPartitions(partitions),
		rabbitmq.WithReconnect(500*time.Millisecond, 240),
		rabbitmq.WithPublishTimeout(5*time.Second),
		rabbitmq.WithLogger(quietLogger()),
	)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer tr.Close()
	queue := "rt-" + randomID(t)
	c.add(queue)
	if err := tr.Declare(ctx, transport.Queue{Name: queue}); err != nil {
		t.Fatalf("Declare: %v", err)
	}

	var (
		mu         sync.Mutex
		handled    = map[string]bool{}
		deliveries atomic.Int64
		settleErrs atomic.Int64
		allDone    = make(chan struct{})
		doneOnce   sync.Once
	)
	var handledCount atomic.Int64
	cctx, stopConsumer := context.WithCancel(ctx)
	consumed := make(chan error, 1)
	startConsumer := func() {
		consumed <- tr.Consume(cctx, queue, 64, func(ctx context.Context, d transport.Delivery) {
			if backlog {
				time.Sleep(4 * time.Millisecond) // 8 partitions: at most 2,000/s
			}
			deliveries.Add(1)
			id := d.Envelope().ID
			// Record before the ack (ack after persist): a delivery whose
			// ack is lost comes back and is absorbed here.
			mu.Lock()
			handled[id] = true
			n := len(handled)
			mu.Unlock()
			handledCount.Store(int64(n))
			if err := d.Ack(ctx); err != nil {
				settleErrs.Add(1)
			}
			if n == total {
				doneOnce.Do(func() { close(allDone) })
			}
		})
	}
	if !backlog {
		go startConsumer()
	}

	payload := json.RawMessage(`{"n":1,"note":"recovery"}`)
	var (
		published atomic.Int64
		retries   atomic.Int64
		failed    atomic.Int64
		next      atomic.Int64
		wg        sync.WaitGroup
		disturbed = make(chan struct{})
		disturbAt = time.Time{}
	)
	start := time.Now()
	// Watch readiness: when it was lost and when it came back.
	var (
		watchMu             sync.Mutex
		downAt, upAt        time.Time
		downReason          string
		watchStop, watchEnd = make(chan struct{}), make(chan struct{})
	)
	go func() {
		defer close(watchEnd)
		for {
			select {
			case <-watchStop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			err := tr.Ready()
			watchMu.Lock()
			if err != nil && downAt.IsZero() {
				downAt, downReason = time.Now(), err.Error()
			}
			if err == nil && !downAt.IsZero() && upAt.IsZero() {
				upAt = time.Now()
			}
			watchMu.Unlock()
		}
	}()
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				e := message.Envelope{
					ID: message.NewID(), Kind: message.KindCommand, Type: "recovery.Do.v1", Source: "test",
					Destination: queue, Key: fmt.Sprintf("key-%d", i%keys), OccurredAt: time.Now(), Payload: payload,
				}
				var err error
				for try := range maxTries {
					if err = tr.Publish(ctx, e); err == nil {
						break
					}
					if ctx.Err() != nil || errors.Is(err, transport.ErrClosed) {
						break
					}
					retries.Add(1)
					_ = try
					time.Sleep(250 * time.Millisecond)
				}
				if err != nil {
					failed.Add(1)
					t.Errorf("message %d not published after retries: %v", i, err)
					return
				}
				published.Add(1)
			}
		}()
	}

	// Disturb when about a third is published (backlog: handled).
	var disturbDone = make(chan struct{})
	go func() {
		defer close(disturbDone)
		progress := &published
		if backlog {
			progress = &handledCount
		}
		for progress.Load() < total/3 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		disturbAt = time.Now()
		close(disturbed)
		disturb(t)
	}()

	wg.Wait()
	publishTook := time.Since(start)
	if backlog {
		go startConsumer()
	}
	<-disturbDone
	<-disturbed
	select {
	case <-allDone:
	case <-ctx.Done():
	}
	handledTook := time.Since(start)
	// Ready again?
	readyAt := time.Now()
	for tr.Ready() != nil && time.Since(readyAt) < 30*time.Second {
		time.Sleep(50 * time.Millisecond)
	}
	close(watchStop)
	<-watchEnd
	stopConsumer()
	select {
	case err := <-consumed:
		if err != nil {
			t.Errorf("Consume = %v, want nil (it must ride through the outage)", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("Consume did not return after its context was cancelled")
	}
	mu.Lock()
	n := len(handled)
	mu.Unlock()
	t.Logf("%s: published %d (publish retries %d, failed %d) in %v; handled %d unique of %d in %v; deliveries %d (duplicates absorbed %d); settles refused after recovery %d; disturbed at +%v",
		what, published.Load(), retries.Load(), failed.Load(), publishTook.Round(time.Millisecond),
		n, total, handledTook.Round(time.Millisecond), deliveries.Load(), deliveries.Load()-int64(n), settleErrs.Load(),
		disturbAt.Sub(start).Round(time.Millisecond))
	watchMu.Lock()
	if downAt.IsZero() || upAt.Before(downAt) {
		t.Errorf("%s: Ready never reported the outage, or never recovered (down at %v, up at %v)", what, downAt, upAt)
	} else {
		t.Logf("%s: not ready for %v (from +%v: %s); recovered by itself", what, upAt.Sub(downAt).Round(time.Millisecond),
			downAt.Sub(start).Round(time.Millisecond), downReason)
	}
	watchMu.Unlock()
	if n != total {
		t.Fatalf("%s: %d of %d messages handled within the time box: %d lost", what, n, total, total-n)
	}
	if err := tr.Ready(); err != nil {
		t.Fatalf("%s: transport not ready after the outage: %v", what, err)
	}
}
