package transport

import (
	"context"
	"errors"
	"hash/fnv"
	"time"

	"github.com/sagaflow/sagaflow/message"
)

// Sentinel errors; test for them with errors.Is.
var (
	// ErrClosed: the transport has been closed.
	ErrClosed = errors.New("transport closed")
	// ErrUnroutable: a message has no queue to go to (a command or reply
	// to an undeclared destination).
	ErrUnroutable = errors.New("message unroutable")
	// ErrAlreadySettled: a delivery was acked, requeued or dead-lettered before.
	ErrAlreadySettled = errors.New("delivery already settled")
)

// DefaultPartitions is the number of partitions per destination when none
// is configured.
const DefaultPartitions = 16

// Partition maps a key to one of n partitions with a stable hash (FNV-1a),
// the same in every process and every release.
func Partition(key string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// Delivery is one received message and the handle to settle it.
type Delivery interface {
	// Envelope is the received message.
	Envelope() message.Envelope
	// Partition is the partition the message came from.
	Partition() int
	// Attempt counts deliveries of this message, from 1.
	Attempt() int
	// Ack settles the delivery as handled.
	Ack(ctx context.Context) error
	// Requeue returns the message to its partition to be delivered again.
	// reason is kept and used if the delivery limit dead-letters it.
	Requeue(ctx context.Context, reason error) error
	// Retry hands the message back to be delivered again after delay, at
	// the back of its partition: later messages of its key may overtake
	// it, so consumers that need per-key order retry in place first (see
	// DESIGN.md) and use Retry only when that is exhausted. The next
	// delivery's Attempt goes on counting; Retry of the delivery that has
	// reached the delivery limit dead-letters it with reason instead. A
	// transport may round delay up to one of the delays it supports.
	Retry(ctx context.Context, delay time.Duration, reason error) error
	// DeadLetter moves the message to the dead-letter queue with reason.
	DeadLetter(ctx context.Context, reason error) error
}

// Handler receives deliveries. It must settle each, now or later; it may
// return before settling (the delivery is then in flight, which counts
// against the consumer's prefetch).
type Handler func(ctx context.Context, d Delivery)

// Queue describes one destination's queue: its name and the event types
// bound to it. Commands and replies whose Destination equals Name go to it;
// events whose Type is in Events are copied to it.
type Queue struct {
	// Name is the destination name, for example "inventory".
	Name string
	// Events lists the event types this queue subscribes to.
	Events []string
}

// DeadLetter is a message that could not be handled, with why.
type DeadLetter struct {
	// Message is the original message.
	Message message.Envelope `json:"message"`
	// Queue is the queue it was taken from.
	Queue string `json:"queue"`
	// Reason says why it was dead-lettered.
	Reason string `json:"reason"`
	// Attempts is how many times it was delivered.
	Attempts int `json:"attempts"`
	// At is when it was dead-lettered.
	At time.Time `json:"at"`
}

// Transport publishes and consumes envelopes.
type Transport interface {
	// Declare makes q exist, with its partitions and event bindings. It is
	// idempotent.
	Declare(ctx context.Context, q Queue) error
	// Publish sends e (validated first). It returns once the transport has
	// taken responsibility for e: for a broker, once it confirmed the
	// publish. A command or reply to an undeclared destination fails with
	// ErrUnroutable.
	Publish(ctx context.Context, e message.Envelope) error
	// Consume delivers the messages of queue to h until ctx is done or the
	// transport closes, keeping at most prefetch deliveries unsettled per
	// partition. Messages of one partition are delivered in order. It
	// blocks; it returns nil when ctx is cancelled.
	Consume(ctx context.Context, queue string, prefetch int, h Handler) error
	// DeadLetters returns up to limit dead-lettered messages, oldest first.
	DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error)
	// ReplayDeadLetters moves the dead letters whose message ID is in ids
	// back to the queue (and partition) they were taken from, as new
	// deliveries whose Attempt starts again at 1, and removes them from the
	// dead letters. It returns the IDs it moved, in dead-letter order; an
	// ID that is not among the dead letters is left out, not an error. On
	// error, the IDs returned were moved and the others were not.
	ReplayDeadLetters(ctx context.Context, ids []string) ([]string, error)
	// DiscardDeadLetters removes the dead letters whose message ID is in
	// ids and returns the IDs it removed, like ReplayDeadLetters.
	DiscardDeadLetters(ctx context.Context, ids []string) ([]string, error)
	// Close stops all consumers and releases resources.
	Close() error
}
