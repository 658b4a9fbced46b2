package testenv

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// RabbitMQCtl runs rabbitmqctl with args, bounded by d, for tests that
// disturb the broker (close its connections, stop and start it); the test
// fails if the command fails. SAGAFLOW_RABBITMQCTL replaces the command
// (split on spaces, for example "docker exec rabbitmq rabbitmqctl");
// without it and without rabbitmqctl on PATH the test is skipped, or fails
// when CI=true.
func RabbitMQCtl(t testing.TB, d time.Duration, args ...string) {
	t.Helper()
	RabbitMQCtlOutput(t, d, args...)
}

// RabbitMQCtlOutput runs rabbitmqctl like RabbitMQCtl and returns what it
// printed (standard output and error), for commands that read a setting,
// such as eval 'application:get_env(rabbit, consumer_timeout).'. It
// returns "" when the command failed (the test has failed then).
func RabbitMQCtlOutput(t testing.TB, d time.Duration, args ...string) string {
	t.Helper()
	cmd := strings.Fields(os.Getenv("SAGAFLOW_RABBITMQCTL"))
	if len(cmd) == 0 {
		path, err := exec.LookPath("rabbitmqctl")
		if err != nil {
			Unavailable(t, "rabbitmqctl not found (%v); set SAGAFLOW_RABBITMQCTL to run this test", err)
		}
		cmd = []string{path}
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, cmd[0], append(cmd[1:], args...)...).CombinedOutput()
	if err != nil {
		t.Errorf("rabbitmqctl %v: %v\n%s", args, err, out)
		return ""
	}
	t.Logf("rabbitmqctl %v took %v", args, time.Since(start).Round(time.Millisecond))
	return string(out)
}

// RestartRabbitMQApp stops the broker application, waits pause, starts it
// again and waits until it is up (rabbitmqctl stop_app, start_app,
// await_startup).
func RestartRabbitMQApp(t testing.TB, pause time.Duration) {
	t.Helper()
	RabbitMQCtl(t, 60*time.Second, "stop_app")
	time.Sleep(pause)
	RabbitMQCtl(t, 60*time.Second, "start_app")
	RabbitMQCtl(t, 60*time.Second, "await_startup", "--timeout", "60")
}
