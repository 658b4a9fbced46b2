package actors

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/asynkron/protoactor-go/actor"
)

// recordingInvoker records what a mailbox hands it; a user message
// "panic" makes it panic.
type recordingInvoker struct {
	mu        sync.Mutex
	got       []string
	escalated []string
}

func (r *recordingInvoker) record(kind string, m any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, fmt.Sprintf("%s:%v", kind, m))
}

func (r *recordingInvoker) InvokeSystemMessage(m any) { r.record("sys", m) }

func (r *recordingInvoker) InvokeUserMessage(m any) {
	if m == "panic" {
		panic("handler failed")
	}
	r.record("user", m)
}

func (r *recordingInvoker) EscalateFailure(reason, m any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.escalated = append(r.escalated, fmt.Sprintf("%v on %v", reason, m))
}

func (r *recordingInvoker) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// manualDispatcher keeps what the mailbox schedules until the test runs it.
type manualDispatcher struct{ runs []func() }

func (d *manualDispatcher) Schedule(fn func()) { d.runs = append(d.runs, fn) }
func (d *manualDispatcher) Throughput() int    { return 300 }

// runAll runs the scheduled runs and reports how many there were.
func (d *manualDispatcher) runAll() int {
	runs := d.runs
	d.runs = nil
	for _, run := range runs {
		run()
	}
	return len(runs)
}

func newManualMailbox() (*keyedMailbox, *recordingInvoker, *manualDispatcher) {
	m := newKeyedMailbox().(*keyedMailbox)
	inv, d := &recordingInvoker{}, &manualDispatcher{}
	m.RegisterHandlers(inv, d)
	return m, inv, d
}

func TestKeyedMailboxHandsSystemMessagesFirstThenUserMessagesInOrder(t *testing.T) {
	m, inv, d := newManualMailbox()
	m.PostUserMessage("u1")
	m.PostUserMessage("u2")
	m.PostSystemMessage("s1")
	if got := m.UserMessageCount(); got != 2 {
		t.Fatalf("UserMessageCount = %d before the run, want 2", got)
	}
	if n := d.runAll(); n != 1 {
		t.Fatalf("%d runs scheduled for three posts to an idle mailbox, want 1", n)
	}
	want := []string{"sys:s1", "user:u1", "user:u2"}
	if got := inv.messages(); !slices.Equal(got, want) {
		t.Fatalf("handled %v, want %v", got, want)
	}
	// The run ended with the mailbox idle: it owns no queue, and the next
	// post schedules a new run.
	if m.user != nil || m.system != nil || m.scheduled {
		t.Fatalf("drained mailbox: user queue %v, system queue %v, scheduled %v; want none, none, false", m.user, m.system, m.scheduled)
	}
	m.PostUserMessage("u3")
	if n := d.runAll(); n != 1 {
		t.Fatalf("%d runs scheduled for a post to a drained mailbox, want 1", n)
	}
	if got := inv.messages(); got[len(got)-1] != "user:u3" {
		t.Fatalf("handled %v, want u3 last", got)
	}
}

func TestKeyedMailboxHoldsUserMessagesWhileSuspended(t *testing.T) {
	m, inv, d := newManualMailbox()
	m.PostSystemMessage(&actor.SuspendMailbox{})
	m.PostUserMessage("u1")
	d.runAll()
	if got := inv.messages(); len(got) != 0 {
		t.Fatalf("a suspended mailbox handed over %v", got)
	}
	if got := m.UserMessageCount(); got != 1 {
		t.Fatalf("UserMessageCount = %d while suspended, want 1", got)
	}
	m.PostSystemMessage("s1")
	d.runAll()
	if got, want := inv.messages(), []string{"sys:s1"}; !slices.Equal(got, want) {
		t.Fatalf("while suspended handled %v, want only the system message %v", got, want)
	}
	m.PostSystemMessage(&actor.ResumeMailbox{})
	d.runAll()
	if got, want := inv.messages(), []string{"sys:s1", "user:u1"}; !slices.Equal(got, want) {
		t.Fatalf("after resume handled %v, want %v", got, want)
	}
}

func TestKeyedMailboxEscalatesAPanicAndGoesOn(t *testing.T) {
	m, inv, d := newManualMailbox()
	m.PostUserMessage("u1")
	m.PostUserMessage("panic")
	m.PostUserMessage("u2")
	d.runAll()
	if want := []string{"handler failed on panic"}; !slices.Equal(inv.escalated, want) {
		t.Fatalf("escalated %v, want %v", inv.escalated, want)
	}
	if got, want := inv.messages(), []string{"user:u1", "user:u2"}; !slices.Equal(got, want) {
		t.Fatalf("handled %v, want %v", got, want)
	}
	if m.scheduled {
		t.Fatal("mailbox still marked scheduled after its run ended")
	}
}

// TestKeyedMailboxUnderConcurrentPosts posts from many goroutines to a
// mailbox on Proto.Actor's goroutine dispatcher: every message is handled
// once, one at a time, each poster's in the order it posted them.
func TestKeyedMailboxUnderConcurrentPosts(t *testing.T) {
	const posters, each = 8, 2000
	m := newKeyedMailbox().(*keyedMailbox)
	inv := &orderInvoker{next: make([]int, posters), done: make(chan struct{})}
	inv.left.Store(posters * each)
	m.RegisterHandlers(inv, actor.NewDefaultDispatcher(50))
	var wg sync.WaitGroup
	for p := range posters {
		wg.Go(func() {
			for i := range each {
				if i%64 == 0 {
					m.PostSystemMessage(sysPing{})
				}
				m.PostUserMessage(posted{poster: p, seq: i})
			}
		})
	}
	wg.Wait()
	<-inv.done
	if err := inv.failure(); err != "" {
		t.Fatal(err)
	}
}

type posted struct{ poster, seq int }

type sysPing struct{}

// orderInvoker checks that user messages come one at a time and in each
// poster's order.
type orderInvoker struct {
	busy   atomic.Int32
	left   atomic.Int64
	next   []int // only touched by the mailbox's one running handler
	mu     sync.Mutex
	failed string
	done   chan struct{}
}

func (o *orderInvoker) fail(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.failed == "" {
		o.failed = fmt.Sprintf(format, args...)
	}
}

func (o *orderInvoker) failure() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.failed
}

func (o *orderInvoker) InvokeSystemMessage(any) {}

func (o *orderInvoker) InvokeUserMessage(m any) {
	if n := o.busy.Add(1); n != 1 {
		o.fail("%d handlers ran at once", n)
	}
	p := m.(posted)
	if o.next[p.poster] != p.seq {
		o.fail("poster %d: got message %d, want %d", p.poster, p.seq, o.next[p.poster])
	}
	o.next[p.poster] = p.seq + 1
	o.busy.Add(-1)
	if o.left.Add(-1) == 0 {
		close(o.done)
	}
}

func (o *orderInvoker) EscalateFailure(reason, m any) { o.fail("escalated %v on %v", reason, m) }

// TestIdleKeyedActorPartsAreSmall keeps what an idle aggregate actor's own
// objects cost (docs/ARCHITECTURE.md, "Keyed actors' memory"): its mailbox
// and its entity.
func TestIdleKeyedActorPartsAreSmall(t *testing.T) {
	if size := unsafe.Sizeof(keyedMailbox{}); size > 64 {
		t.Errorf("keyedMailbox is %d bytes, want at most 64", size)
	}
	if size := unsafe.Sizeof(aggregateEntity{}); size > 80 {
		t.Errorf("aggregateEntity is %d bytes, want at most 80", size)
	}
}
