package engine_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/customers"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/projection"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
)

// On the real broker, public events reach both projections' queues
// through the topic exchange, and the read models follow the commands.
func TestProjectionsOverRabbitMQ(t *testing.T) {
	u := testenv.RabbitMQ(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "projtest-" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr, err := rabbitmq.Dial(ctx, u, rabbitmq.WithName(name), rabbitmq.WithPartitions(4), rabbitmq.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer dcancel()
		if err := tr.DeleteTopology(dctx, name, customers.Service, projection.QueuePrefix+customers.ByID, projection.QueuePrefix+customers.ByClass); err != nil {
			t.Logf("delete topology: %v", err)
		}
		_ = tr.Close()
	})
	e := customers.Setup(engine.New(engine.Options{
		Name: name, DataDir: t.TempDir(), Transport: tr, Partitions: 4,
		AdminAddr: engine.AdminOff, Logger: quietLogger(),
	}))
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	runEngine(t, e)
	var last engine.CommandResult
	for i := range 10 {
		id := fmt.Sprintf("r-%d", i)
		execute(t, e, id, &customers.Register{Name: id})
		last = execute(t, e, id, &customers.Classify{Class: "B"})
	}
	for _, model := range []string{customers.ByID, customers.ByClass} {
		if err := e.WaitForReadModel(context.Background(), model, last.Stream, last.Sequence, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := readDoc[customers.Class](t, e, customers.ByClass, "B")
	// Each customer's stream is on its own partition queue; wait for all.
	for deadline := time.Now().Add(20 * time.Second); len(c.Customers) < 10; c, _ = readDoc[customers.Class](t, e, customers.ByClass, "B") {
		if time.Now().After(deadline) {
			t.Fatalf("class B has %v, want 10 customers", c.Customers)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, _ := e.ProjectionStatus(customers.ByClass); st.Parked != 0 || st.Applied != 10 || st.Skipped != 10 {
		t.Fatalf("status %+v, want 10 applied, 10 skipped (the registrations), none parked", st)
	}
}
