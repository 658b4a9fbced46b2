package participant_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/participant"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
)

// A payments service answers the ChargeCard commands sagas send it: a
// charge over the limit is a business failure (the saga compensates);
// anything else succeeds with a typed result.
func Example() {
	type ChargeCard struct {
		OrderID string `json:"order_id"`
		Amount  int    `json:"amount"`
	}
	type CardCharged struct {
		ChargeID string `json:"charge_id"`
	}
	reg := message.NewRegistry(nil)
	message.MustRegister[ChargeCard](reg, "payments.ChargeCard.v1")
	message.MustRegister[CardCharged](reg, "payments.CardCharged.v1")

	// In production: the RabbitMQ transport, and a Deduper on the
	// service's own database (or participant.NewStoreDeduper).
	tr := inmem.New()
	defer tr.Close()
	p := participant.New(tr, reg, "payments", participant.WithDeduper(participant.NewMemoryDeduper()))
	participant.Handle(p, func(ctx context.Context, c *ChargeCard, m participant.Meta) (*CardCharged, error) {
		if c.Amount > 1000 {
			return nil, participant.Fail(errors.New("card declined"))
		}
		return &CardCharged{ChargeID: "ch-" + c.OrderID}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = p.Run(ctx) }()

	// What the engine does: send commands with a reply-to queue, and read
	// the replies from it.
	ctx2 := context.Background()
	_ = tr.Declare(ctx2, transport.Queue{Name: "sagas"})
	_ = tr.Declare(ctx2, transport.Queue{Name: "payments"}) // Run declares it too
	replies := make(chan message.Envelope)
	go func() {
		_ = tr.Consume(ctx, "sagas", 1, func(ctx context.Context, d transport.Delivery) {
			_ = d.Ack(ctx)
			replies <- d.Envelope()
		})
	}()
	for _, amount := range []int{20, 5000} {
		cmd, _ := reg.New(message.KindCommand, "order-1", &ChargeCard{OrderID: "order-1", Amount: amount})
		cmd.Destination, cmd.SagaID = "payments", "saga-1"
		cmd.SetHeader(message.HeaderReplyTo, "sagas")
		if err := tr.Publish(ctx2, cmd); err != nil {
			fmt.Println(err)
			return
		}
		r := <-replies
		fmt.Println(r.Type, string(r.Payload), r.CausationID == cmd.ID)
	}
	// Output:
	// payments.CardCharged.v1 {"charge_id":"ch-order-1"} true
	// sagaflow.CommandFailed.v1 {"reason":"card declined","retryable":false} true
}
