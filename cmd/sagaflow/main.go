// Command sagaflow is the saga engine daemon and its CLI. `sagaflow serve`
// runs the engine with the demo order saga registered; `sagaflow demo` runs
// that saga end to end and exits; the other subcommands talk to a running
// engine's admin API. Run `sagaflow --help` for the list.
package main

import (
	"context"
	"os"

	"github.com/sagaflow/sagaflow/daemon"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/orders"
)

func main() {
	os.Exit(daemon.Main(context.Background(), os.Args, func(e *engine.Engine) {
		orders.Register(e, orders.DefaultShippingRetry)
	}))
}
