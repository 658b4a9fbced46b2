package rabbitmq

import (
	"io"
	"log/slog"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestReconnectsCountRecoveredConnections feeds the connection state
// changes amqp091-go reports to the handler the transport installs: only
// a connection that was recovering and is open again counts, which is what
// the engine exports as sagaflow.transport.reconnects. (Losing the real
// connection is what recovery_test.go does; it disturbs the shared broker,
// so it is not run for this.)
func TestReconnectsCountRecoveredConnections(t *testing.T) {
	tr := &Transport{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	l := &link{t: tr, role: "publish", state: amqp.StateOpen, changed: make(chan struct{})}
	steps := []struct {
		from, to amqp.LifeCycleState
		want     uint64
	}{
		{amqp.StateOpen, amqp.StateReconnecting, 0},
		{amqp.StateReconnecting, amqp.StateOpen, 1},
		{amqp.StateOpen, amqp.StateClosing, 1},
		{amqp.StateOpen, amqp.StateReconnecting, 1},
		{amqp.StateReconnecting, amqp.StateOpen, 2},
	}
	for i, s := range steps {
		l.onState(&amqp.StateChanged{From: s.from, To: s.to})
		if got := tr.Reconnects(); got != s.want {
			t.Fatalf("after change %d (%v -> %v): %d reconnects, want %d", i, s.from, s.to, got, s.want)
		}
	}
	if tr.MessagingSystem() != "rabbitmq" {
		t.Errorf("MessagingSystem %q", tr.MessagingSystem())
	}
}
