package orders

import (
	"errors"
	"fmt"
	"time"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/workflows"
)

// WorkflowName is the demo saga's name.
const WorkflowName = "orders.PlaceOrder"

// Service names: each is the queue its aggregate's commands arrive on.
const (
	InventoryService = "inventory"
	PaymentService   = "payments"
	ShippingService  = "shipping"
)

// Input is what starting an order saga takes.
type Input struct {
	OrderID string `json:"order_id"`
	SKU     string `json:"sku"`
	Qty     int    `json:"qty"`
	Amount  int    `json:"amount"`
	Address string `json:"address"`
}

// State is the saga's state.
type State struct {
	Input
	ChargeID   string `json:"charge_id,omitempty"`
	TrackingNo string `json:"tracking_no,omitempty"`
}

// Commands.
type (
	// ReserveStock reserves Qty of SKU for an order.
	ReserveStock struct {
		OrderID string `json:"order_id"`
		SKU     string `json:"sku"`
		Qty     int    `json:"qty"`
	}
	// ReleaseStock undoes ReserveStock.
	ReleaseStock struct {
		OrderID string `json:"order_id"`
	}
	// ChargePayment charges an order's amount.
	ChargePayment struct {
		OrderID string `json:"order_id"`
		Amount  int    `json:"amount"`
	}
	// RefundPayment undoes ChargePayment.
	RefundPayment struct {
		OrderID string `json:"order_id"`
	}
	// ShipOrder books a shipment.
	ShipOrder struct {
		OrderID string `json:"order_id"`
		Address string `json:"address"`
	}
)

// Events.
type (
	// StockReserved records a reservation.
	StockReserved struct {
		OrderID string `json:"order_id"`
		SKU     string `json:"sku"`
		Qty     int    `json:"qty"`
	}
	// StockReleased records the release of a reservation.
	StockReleased struct {
		OrderID string `json:"order_id"`
	}
	// PaymentCharged records a charge.
	PaymentCharged struct {
		OrderID  string `json:"order_id"`
		ChargeID string `json:"charge_id"`
		Amount   int    `json:"amount"`
	}
	// PaymentRefunded records a refund.
	PaymentRefunded struct {
		OrderID  string `json:"order_id"`
		ChargeID string `json:"charge_id"`
	}
	// OrderShipped records a booked shipment.
	OrderShipped struct {
		OrderID    string `json:"order_id"`
		TrackingNo string `json:"tracking_no"`
	}
)

// Reservation is the inventory aggregate's state, one per order.
type Reservation struct {
	OrderID  string
	Reserved bool
	Released bool
}

// Payment is the payments aggregate's state, one per order.
type Payment struct {
	OrderID  string
	ChargeID string
	Refunded bool
}

// Shipment is the shipping aggregate's state, one per order.
type Shipment struct {
	OrderID    string
	TrackingNo string
}

// MaxAmount is the largest amount the demo payment service accepts.
const MaxAmount = 1000

// Unreachable is the address the demo carrier cannot deliver to.
const Unreachable = "nowhere"

// ErrDeclined and ErrCarrierUnavailable are the demo's failures.
var (
	ErrDeclined           = errors.New("payment declined")
	ErrCarrierUnavailable = errors.New("carrier unavailable")
)

// Messages returns the registrations of every message type of the demo.
func Messages() []any {
	return []any{
		engine.Message[ReserveStock]("inventory.ReserveStock.v1"),
		engine.Message[ReleaseStock]("inventory.ReleaseStock.v1"),
		engine.Message[StockReserved]("inventory.StockReserved.v1"),
		engine.Message[StockReleased]("inventory.StockReleased.v1"),
		engine.Message[ChargePayment]("payments.ChargePayment.v1"),
		engine.Message[RefundPayment]("payments.RefundPayment.v1"),
		engine.Message[PaymentCharged]("payments.PaymentCharged.v1"),
		engine.Message[PaymentRefunded]("payments.PaymentRefunded.v1"),
		engine.Message[ShipOrder]("shipping.ShipOrder.v1"),
		engine.Message[OrderShipped]("shipping.OrderShipped.v1"),
	}
}

// Inventory is the inventory aggregate. Releasing a reservation that was
// never made (a cancelled saga whose reserve was still in flight) is
// accepted and records nothing: compensations tolerate nothing to undo.
func Inventory() *aggregate.Definition[Reservation] {
	d := aggregate.New(InventoryService, "inventory.Reservation", func(id string) Reservation { return Reservation{OrderID: id} })
	aggregate.Handle(d, func(s Reservation, c *ReserveStock) ([]any, error) {
		if c.Qty <= 0 {
			return nil, fmt.Errorf("quantity %d: must be positive", c.Qty)
		}
		return []any{StockReserved{OrderID: c.OrderID, SKU: c.SKU, Qty: c.Qty}}, nil
	})
	aggregate.Handle(d, func(s Reservation, c *ReleaseStock) ([]any, error) {
		if !s.Reserved || s.Released {
			return nil, nil
		}
		return []any{StockReleased{OrderID: c.OrderID}}, nil
	})
	aggregate.Apply(d, func(s Reservation, _ *StockReserved) Reservation { s.Reserved = true; return s })
	aggregate.Apply(d, func(s Reservation, _ *StockReleased) Reservation { s.Released = true; return s })
	return d
}

// Payments is the payments aggregate: it declines amounts over MaxAmount.
func Payments() *aggregate.Definition[Payment] {
	d := aggregate.New(PaymentService, "payments.Payment", func(id string) Payment { return Payment{OrderID: id} })
	aggregate.Handle(d, func(s Payment, c *ChargePayment) ([]any, error) {
		if c.Amount > MaxAmount {
			return nil, fmt.Errorf("%w: amount %d over %d", ErrDeclined, c.Amount, MaxAmount)
		}
		return []any{PaymentCharged{OrderID: c.OrderID, ChargeID: "ch-" + c.OrderID, Amount: c.Amount}}, nil
	})
	aggregate.Handle(d, func(s Payment, c *RefundPayment) ([]any, error) {
		if s.ChargeID == "" || s.Refunded {
			return nil, nil
		}
		return []any{PaymentRefunded{OrderID: c.OrderID, ChargeID: s.ChargeID}}, nil
	})
	aggregate.Apply(d, func(s Payment, e *PaymentCharged) Payment { s.ChargeID = e.ChargeID; return s })
	aggregate.Apply(d, func(s Payment, _ *PaymentRefunded) Payment { s.Refunded = true; return s })
	return d
}

// Shipping is the shipping aggregate: it cannot reach Unreachable.
func Shipping() *aggregate.Definition[Shipment] {
	d := aggregate.New(ShippingService, "shipping.Shipment", func(id string) Shipment { return Shipment{OrderID: id} })
	aggregate.Handle(d, func(s Shipment, c *ShipOrder) ([]any, error) {
		if c.Address == Unreachable {
			return nil, aggregate.Retryable(fmt.Errorf("%w for %q", ErrCarrierUnavailable, c.Address))
		}
		return []any{OrderShipped{OrderID: c.OrderID, TrackingNo: "trk-" + c.OrderID}}, nil
	})
	aggregate.Apply(d, func(s Shipment, e *OrderShipped) Shipment { s.TrackingNo = e.TrackingNo; return s })
	return d
}

// DefaultStepTimeout bounds each step's wait for a reply in the demo.
const DefaultStepTimeout = 10 * time.Second

// Workflow is the order saga. retry is the shipping step's retry policy
// (tests shorten its delays).
func Workflow(retry workflows.RetryPolicy) *workflows.Definition[Input, State] {
	return WorkflowWithTimeout(retry, DefaultStepTimeout)
}

// WorkflowWithTimeout is Workflow with every step's reply timeout set to
// timeout (tests that must tell a lost message from a slow one set it long).
func WorkflowWithTimeout(retry workflows.RetryPolicy, timeout time.Duration) *workflows.Definition[Input, State] {
	return workflows.New(WorkflowName, 1, func(in Input) (State, error) {
		if in.OrderID == "" {
			return State{}, errors.New("order_id is required")
		}
		return State{Input: in}, nil
	}).
		Send("reserve-stock", workflows.CommandStep[State]{
			Service: InventoryService,
			Command: func(s *State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: ReserveStock{OrderID: s.OrderID, SKU: s.SKU, Qty: s.Qty}}, nil
			},
			Compensate: func(s *State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: ReleaseStock{OrderID: s.OrderID}}, nil
			},
			Timeout: timeout,
		}).
		Send("charge-payment", workflows.CommandStep[State]{
			Service: PaymentService,
			Command: func(s *State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: ChargePayment{OrderID: s.OrderID, Amount: s.Amount}}, nil
			},
			OnReply: workflows.Reply(func(s *State, r *PaymentCharged) error { s.ChargeID = r.ChargeID; return nil }),
			Compensate: func(s *State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: RefundPayment{OrderID: s.OrderID}}, nil
			},
			Timeout: timeout,
		}).
		Send("ship-order", workflows.CommandStep[State]{
			Service: ShippingService,
			Command: func(s *State) (workflows.Cmd, error) {
				return workflows.Cmd{Key: s.OrderID, Body: ShipOrder{OrderID: s.OrderID, Address: s.Address}}, nil
			},
			OnReply: workflows.Reply(func(s *State, r *OrderShipped) error { s.TrackingNo = r.TrackingNo; return nil }),
			Retry:   retry,
			Timeout: timeout,
		})
}

// DefaultShippingRetry is the shipping step's retry policy in the demo.
var DefaultShippingRetry = workflows.RetryPolicy{MaxAttempts: 3, InitialInterval: 200 * time.Millisecond, MaxInterval: 2 * time.Second, Multiplier: 2, Jitter: 0.2}

// Register registers the demo's messages, aggregates and workflow on e.
func Register(e *engine.Engine, retry workflows.RetryPolicy) *engine.Engine {
	return RegisterWith(e, Workflow(retry))
}

// RegisterWith registers the demo's messages and aggregates, and wf, on e.
func RegisterWith(e *engine.Engine, wf *workflows.Definition[Input, State]) *engine.Engine {
	return e.Register(Messages()...).Register(Inventory(), Payments(), Shipping(), wf)
}
