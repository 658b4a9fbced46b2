package daemon

import (
	"os"
	"testing"
)

// TestMain runs the daemon's tests on the embedded defaults: `serve` here
// tests settings, commands and signals, not the services, so it must not
// pick up SAGAFLOW_AMQP_URL or SAGAFLOW_MONGO_URI from the environment
// (scripts/test.sh sets them for the other packages). With them, every
// run would share the default "sagaflow" queues and database on the
// shared broker and server, and see what earlier runs left there.
func TestMain(m *testing.M) {
	for _, name := range []string{"SAGAFLOW_AMQP_URL", "SAGAFLOW_MONGO_URI"} {
		if err := os.Unsetenv(name); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
