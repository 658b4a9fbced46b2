package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
)

// demoOrders are the sagas the demo runs: one that completes, one whose
// payment is declined, one whose shipping keeps failing.
var demoOrders = []struct {
	title string
	input orders.Input
}{
	{"an order that goes through", orders.Input{OrderID: "order-1", SKU: "book", Qty: 1, Amount: 30, Address: "1 Main St"}},
	{"a payment that is declined (business failure: stock released)", orders.Input{OrderID: "order-2", SKU: "piano", Qty: 1, Amount: 5000, Address: "2 Main St"}},
	{"a carrier that stays down (retried 3 times, then refund and release in reverse order)", orders.Input{OrderID: "order-3", SKU: "lamp", Qty: 2, Amount: 80, Address: orders.Unreachable}},
}

func demoCommand(_ Setup, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run the order saga demo on the embedded default (no RabbitMQ, no MongoDB) and exit",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Usage: "directory of the embedded store (default: a temporary one)"},
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn or error"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			logger, err := newLogger(stderr, cmd.String("log-level"), "text")
			if err != nil {
				return err
			}
			dir := cmd.String("data-dir")
			if dir == "" {
				if dir, err = os.MkdirTemp("", "sagaflow-demo-"); err != nil {
					return fmt.Errorf("make a temporary data directory: %w", err)
				}
				defer os.RemoveAll(dir)
			}
			e := orders.Register(engine.New(engine.Options{DataDir: dir, AdminAddr: "127.0.0.1:0", Logger: logger}), orders.DefaultShippingRetry)
			ctx, stop := signalContext(ctx, logger)
			defer stop()
			runCtx, cancelRun := context.WithCancel(ctx)
			defer cancelRun()
			done := make(chan error, 1)
			go func() { done <- e.Run(runCtx) }()
			select {
			case err := <-done:
				return err
			case <-e.Ready():
			}
			fmt.Fprintf(stdout, "sagaflow demo: engine on the embedded store in %s, admin API at %s\n\n", dir, e.AdminURL())
			runErr := runDemo(ctx, e, stdout)
			cancelRun()
			if err := <-done; err != nil && runErr == nil {
				runErr = err
			}
			return runErr
		},
	}
}

func runDemo(ctx context.Context, e *engine.Engine, stdout io.Writer) error {
	for _, o := range demoOrders {
		input, err := json.Marshal(o.input)
		if err != nil {
			return err
		}
		id, err := e.StartSaga(ctx, engine.StartRequest{Workflow: orders.WorkflowName, Input: input, CorrelationID: o.input.OrderID})
		if err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		s, err := e.WaitSaga(wctx, id)
		cancel()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "== %s\n", o.title)
		if err := printSaga(stdout, s, false); err != nil {
			return err
		}
		fmt.Fprintln(stdout)
	}
	return nil
}
