// Command scaledaemon is the sagaflow daemon (daemon.Main, the entry point
// cmd/sagaflow calls) with the order saga registered with hour-long step
// timeouts, for the engine's scale-out test: a message lost when a node is
// killed must show as a saga that never finishes, not be absorbed by a
// timeout and a compensation. The test builds it without the race
// detector and runs three of it with `serve`.
package main

import (
	"context"
	"os"
	"time"

	"github.com/sagaflow/sagaflow/daemon"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
	"github.com/sagaflow/sagaflow/workflows"
)

// shippingRetry fails the unreachable address's shipping step fast.
var shippingRetry = workflows.RetryPolicy{MaxAttempts: 3, InitialInterval: 20 * time.Millisecond, MaxInterval: 100 * time.Millisecond, Multiplier: 2}

func main() {
	os.Exit(daemon.Main(context.Background(), os.Args, func(e *engine.Engine) {
		orders.RegisterWith(e, orders.WorkflowWithTimeout(shippingRetry, time.Hour))
	}))
}
