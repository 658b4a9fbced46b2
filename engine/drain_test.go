package engine

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// fakeDelivery records how it was settled.
type fakeDelivery struct {
	settled []string
}

func (d *fakeDelivery) Envelope() message.Envelope { return message.Envelope{ID: "m"} }
func (d *fakeDelivery) Partition() int             { return 0 }
func (d *fakeDelivery) Attempt() int               { return 1 }
func (d *fakeDelivery) Ack(context.Context) error {
	d.settled = append(d.settled, "ack")
	return nil
}
func (d *fakeDelivery) Requeue(context.Context, error) error {
	d.settled = append(d.settled, "requeue")
	return nil
}
func (d *fakeDelivery) Retry(context.Context, time.Duration, error) error {
	d.settled = append(d.settled, "retry")
	return nil
}
func (d *fakeDelivery) DeadLetter(context.Context, error) error {
	d.settled = append(d.settled, "dead")
	return transport.ErrAlreadySettled // an error still leaves the gate
}

// fakeConsumeTransport hands the deliveries it is given to the handler.
type fakeConsumeTransport struct {
	transport.Transport
	deliveries []transport.Delivery
}

func (f *fakeConsumeTransport) Consume(ctx context.Context, _ string, _ int, h transport.Handler) error {
	for _, d := range f.deliveries {
		h(ctx, d)
	}
	return nil
}

func TestDrainGateCountsUntilSettledAndHoldsAfterDrain(t *testing.T) {
	settle := map[string]func(transport.Delivery) error{
		"ack":     func(d transport.Delivery) error { return d.Ack(context.Background()) },
		"requeue": func(d transport.Delivery) error { return d.Requeue(context.Background(), nil) },
		"retry":   func(d transport.Delivery) error { return d.Retry(context.Background(), time.Second, nil) },
		"dead":    func(d transport.Delivery) error { return d.DeadLetter(context.Background(), nil) },
	}
	for name, do := range settle {
		t.Run(name, func(t *testing.T) {
			inner := &fakeDelivery{}
			ft := &fakeConsumeTransport{deliveries: []transport.Delivery{inner}}
			g := newDrainGate(ft)
			var got []transport.Delivery
			_ = g.Consume(context.Background(), "q", 1, func(_ context.Context, d transport.Delivery) { got = append(got, d) })
			if len(got) != 1 || g.inflight != 1 {
				t.Fatalf("handed %d, in flight %d; want 1 and 1", len(got), g.inflight)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			if left := g.drain(ctx); left != 1 {
				t.Errorf("drain with one unsettled = %d left, want 1", left)
			}
			cancel()
			_ = do(got[0])
			_ = do(got[0]) // a second settle does not count twice
			if g.inflight != 0 {
				t.Errorf("in flight %d after settling, want 0", g.inflight)
			}
			if len(inner.settled) != 2 || inner.settled[0] != name {
				t.Errorf("inner settled %v, want %s twice (the gate passes every call on)", inner.settled, name)
			}
			if left := g.drain(context.Background()); left != 0 {
				t.Errorf("drain = %d left, want 0", left)
			}
			// After the drain, new deliveries are held, not handed on.
			held := &fakeDelivery{}
			ft.deliveries = []transport.Delivery{held}
			_ = g.Consume(context.Background(), "q", 1, func(_ context.Context, d transport.Delivery) { got = append(got, d) })
			if len(got) != 1 || len(held.settled) != 0 {
				t.Errorf("a delivery after the drain was handed on (%d) or settled (%v)", len(got), held.settled)
			}
		})
	}
}

func TestDrainWithNothingInFlightReturnsAtOnce(t *testing.T) {
	g := newDrainGate(&fakeConsumeTransport{})
	done := make(chan int, 1)
	go func() { done <- g.drain(context.Background()) }()
	select {
	case left := <-done:
		if left != 0 {
			t.Errorf("left %d", left)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("drain of an idle gate blocked")
	}
}

// FuzzDecodeBody: any request body is either decoded or refused with an
// error, never a panic, and never accepted beyond MaxRequestBody.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{`{}`, `{"workflow":"w","input":{"a":1}}`, `{"name":"x","payload":[1,2]}`, `{"ids":["a","b"]}`, `{"ids":null} {}`, `[`, ``, `{"id":"\u0000"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&StartRequest{}, &SignalRequest{}, &DeadLetterIDs{}, &ReasonRequest{}} {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(body)))
			r.Header.Set("Content-Type", "application/json")
			err := decodeBody(httptest.NewRecorder(), r, v)
			if err == nil && len(body) > MaxRequestBody {
				t.Fatalf("accepted a body of %d bytes", len(body))
			}
			if err != nil && err.Error() == "" {
				t.Fatal("an error without words")
			}
		}
	})
}
