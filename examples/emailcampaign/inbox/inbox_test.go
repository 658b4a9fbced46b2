package inbox_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/examples/emailcampaign/inbox"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport/inmem"
)

type happened struct {
	What string `json:"what"`
}

type note struct {
	What   string
	Stream string
	Seq    uint64
}

// TestInbox: an event becomes one command with its stream and sequence;
// an event the translation ignores is acked without a command; one whose
// payload does not decode is dead-lettered; a failed send is retried
// until it goes.
func TestInbox(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := inmem.New(inmem.WithPartitions(2))
	defer tr.Close()
	reg := message.NewRegistry(nil)
	message.MustRegister[happened](reg, "test.Happened.v1")
	var mu sync.Mutex
	var sent []note
	fails := 1
	send := func(_ context.Context, service, key string, body any, _ map[string]string) (message.Envelope, error) {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			return message.Envelope{}, errors.New("broker away")
		}
		sent = append(sent, *body.(*note))
		return message.Envelope{}, nil
	}
	in := inbox.New(tr, reg, "test.inbox", []string{"test.Happened.v1"}, send, func(ev inbox.Event) (string, string, any, bool) {
		h := ev.Body.(*happened)
		if h.What == "ignore" {
			return "", "", nil, false
		}
		return "svc", ev.Key, &note{What: h.What, Stream: ev.Stream, Seq: ev.Seq}, true
	}, nil)
	if err := in.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	publish := func(what string, seq uint64, payload []byte) {
		env, err := reg.New(message.KindEvent, "k1", &happened{What: what})
		if err != nil {
			t.Fatal(err)
		}
		env.Source, env.Sequence, env.OccurredAt = "other", seq, time.Now()
		env.Headers = map[string]string{"sagaflow-stream": "other/k1"}
		if payload != nil {
			env.Payload = payload
		}
		if err := tr.Publish(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	publish("ignore", 1, nil)
	publish("bad", 2, []byte(`{"what": 7}`))
	publish("registered", 3, nil)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(sent)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no command sent in 20s")
		}
	}
	mu.Lock()
	if len(sent) != 1 || sent[0] != (note{What: "registered", Stream: "other/k1", Seq: 3}) {
		t.Fatalf("sent %+v", sent)
	}
	mu.Unlock()
	dls, err := tr.DeadLetters(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].Message.Sequence != 2 {
		t.Fatalf("dead letters %+v, want the undecodable event", dls)
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
