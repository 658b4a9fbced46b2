// Package testenv finds the services sagaflow's tests run against. Each
// function returns the service's URL when it answers; when it does not, the
// test fails in CI (CI=true: a missing service must fail the run, never
// skip it) and is skipped elsewhere with a message that says what to set.
package testenv

import (
	"context"
	"net/url"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// DefaultAMQPURL is the broker on the project's machines.
const DefaultAMQPURL = "amqp://guest:guest@127.0.0.1:5672/"

// Unavailable fails the test in CI and skips it elsewhere.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and a service the test needs is missing: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RabbitMQ returns SAGAFLOW_AMQP_URL (or DefaultAMQPURL) once an AMQP
// connection to it succeeds.
func RabbitMQ(t testing.TB) string {
	t.Helper()
	u := os.Getenv("SAGAFLOW_AMQP_URL")
	if u == "" {
		u = DefaultAMQPURL
	}
	c, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err == nil {
		_ = c.Close()
		return u
	}
	redacted := u
	if pu, perr := url.Parse(u); perr == nil {
		redacted = pu.Redacted()
	}
	Unavailable(t, "RabbitMQ at %s cannot be reached (%v); set SAGAFLOW_AMQP_URL (scripts/test.sh starts the local broker)", redacted, err)
	return ""
}

// MongoDB returns SAGAFLOW_MONGO_URI once the server answers a ping.
func MongoDB(t testing.TB) string {
	t.Helper()
	uri := os.Getenv("SAGAFLOW_MONGO_URI")
	if uri == "" {
		Unavailable(t, "SAGAFLOW_MONGO_URI is not set (scripts/test.sh starts tools/devmongo)")
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(10 * time.Second))
	if err == nil {
		err = c.Ping(ctx, nil)
		_ = c.Disconnect(ctx)
	}
	if err != nil {
		Unavailable(t, "MongoDB at SAGAFLOW_MONGO_URI cannot be reached (%v)", err)
		return ""
	}
	return uri
}
