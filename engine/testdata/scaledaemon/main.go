// Command scaledaemon is the sagaflow daemon (daemon.Main, the entry point
// cmd/sagaflow calls) with the order saga registered with hour-long step
// timeouts, for the engine's process-level tests (scale-out, broker
// faults, a SIGKILL with sagas in flight): a message lost when a node is
// killed must show as a saga that never finishes, not be absorbed by a
// timeout and a compensation. The tests build it without the race
// detector and run it with `serve`.
//
// With SAGAFLOW_TEST_SAGAS_ONLY=1 it registers the saga but not the
// participants: its sagas send their first command and wait, the way
// sagas wait for services that are down.
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
	wf := orders.WorkflowWithTimeout(shippingRetry, time.Hour)
	os.Exit(daemon.Main(context.Background(), os.Args, func(e *engine.Engine) {
		if os.Getenv("SAGAFLOW_TEST_SAGAS_ONLY") == "1" {
			e.Register(orders.Messages()...).Register(wf)
			return
		}
		orders.RegisterWith(e, wf)
	}))
}
