package actors

import (
	"runtime"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// keyedMailbox is the mailbox of a keyed actor. It keeps Proto.Actor's
// mailbox contract (system messages before user messages, suspension while
// the supervisor decides on a failure, a yield after the dispatcher's
// throughput, a panic escalated to the supervisor) at a fraction of the
// idle cost: an idle keyed mailbox is 64 bytes and owns no queue, where
// Proto.Actor's lock-free mailbox keeps two queues with a node each
// (about 220 bytes). A queue is taken from a pool when a message arrives
// and given back once drained.
//
// Proto.Actor's MessageBatch is not unpacked: nothing sends one to keyed
// actors.
type keyedMailbox struct {
	mu     sync.Mutex
	user   *messageQueue
	system *messageQueue
	// scheduled is set while a run is scheduled or running, so that one
	// goroutine at a time handles the mailbox's messages.
	scheduled bool
	// suspended holds user messages back while the actor's failure is
	// with its supervisor (between SuspendMailbox and ResumeMailbox).
	suspended  bool
	invoker    actor.MessageInvoker
	dispatcher actor.Dispatcher
}

// newKeyedMailbox is the actor.MailboxProducer of keyed actors.
func newKeyedMailbox() actor.Mailbox { return &keyedMailbox{} }

// PostUserMessage implements actor.Mailbox.
func (m *keyedMailbox) PostUserMessage(message any) { m.post(&m.user, message) }

// PostSystemMessage implements actor.Mailbox.
func (m *keyedMailbox) PostSystemMessage(message any) { m.post(&m.system, message) }

func (m *keyedMailbox) post(q **messageQueue, message any) {
	m.mu.Lock()
	if *q == nil {
		*q = takeQueue()
	}
	(*q).push(message)
	schedule := !m.scheduled
	m.scheduled = true
	m.mu.Unlock()
	// Outside the lock: a synchronized dispatcher runs the mailbox here.
	if schedule {
		m.dispatcher.Schedule(m.run)
	}
}

// RegisterHandlers implements actor.Mailbox.
func (m *keyedMailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker, m.dispatcher = invoker, dispatcher
}

// Start implements actor.Mailbox; a keyed mailbox has no middleware to
// start.
func (m *keyedMailbox) Start() {}

// UserMessageCount implements actor.Mailbox.
func (m *keyedMailbox) UserMessageCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.user.len()
}

// run handles messages until none is left that may be handled now. A
// panic in a handler is escalated to the supervisor and the run goes on
// with the next message (the SuspendMailbox the escalation sent first).
func (m *keyedMailbox) run() {
	for m.runUntilPanic() {
	}
}

// runUntilPanic handles messages until the mailbox has nothing to hand
// over (it then returns false, with scheduled cleared under the lock so
// that the next post schedules a new run) or a handler panicked (true).
func (m *keyedMailbox) runUntilPanic() (panicked bool) {
	var msg any
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
			panicked = true
		}
	}()
	throughput := m.dispatcher.Throughput()
	for handled := 0; ; handled++ {
		if handled >= throughput {
			handled = 0
			runtime.Gosched()
		}
		var system bool
		msg, system = m.next()
		switch {
		case msg == nil:
			return false
		case !system:
			m.invoker.InvokeUserMessage(msg)
		default:
			switch msg.(type) {
			case *actor.SuspendMailbox:
				m.setSuspended(true)
			case *actor.ResumeMailbox:
				m.setSuspended(false)
			default:
				m.invoker.InvokeSystemMessage(msg)
			}
		}
	}
}

// next takes the next message to handle: the oldest system message, else
// (unless suspended) the oldest user message. With neither it returns nil
// and ends the run.
func (m *keyedMailbox) next() (msg any, system bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.system != nil {
		return popQueue(&m.system), true
	}
	if m.user != nil && !m.suspended {
		return popQueue(&m.user), false
	}
	m.scheduled = false
	return nil, false
}

func (m *keyedMailbox) setSuspended(suspended bool) {
	m.mu.Lock()
	m.suspended = suspended
	m.mu.Unlock()
}

// messageQueue is a FIFO of messages. A mailbox holds one only while it
// has messages in it.
type messageQueue struct {
	items []any
	head  int
}

func (q *messageQueue) push(v any) { q.items = append(q.items, v) }

// len is the number of messages in q (0 for nil).
func (q *messageQueue) len() int {
	if q == nil {
		return 0
	}
	return len(q.items) - q.head
}

// popQueue takes the oldest message of the nonempty queue *q, and gives
// the queue back to the pool (setting *q to nil) when that emptied it.
func popQueue(q **messageQueue) any {
	mq := *q
	v := mq.items[mq.head]
	mq.items[mq.head] = nil
	mq.head++
	if mq.head == len(mq.items) {
		*q = nil
		giveQueue(mq)
	}
	return v
}

// keptQueueCap is the largest backing array a queue keeps when it goes
// back to the pool: a burst into one mailbox must not pin its memory.
const keptQueueCap = 64

var queuePool = sync.Pool{New: func() any { return &messageQueue{items: make([]any, 0, 4)} }}

func takeQueue() *messageQueue { return queuePool.Get().(*messageQueue) }

func giveQueue(q *messageQueue) {
	q.head = 0
	if cap(q.items) > keptQueueCap {
		q.items = make([]any, 0, 4)
	} else {
		q.items = q.items[:0]
	}
	queuePool.Put(q)
}
