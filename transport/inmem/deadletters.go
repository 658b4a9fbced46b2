package inmem

import "github.com/sagaflow/sagaflow/transport"

// deadLetters is a ring of at most cap(buf) dead letters: when it is full,
// adding one overwrites the oldest. The caller holds the lock.
type deadLetters struct {
	buf     []transport.DeadLetter // allocated up to capacity as letters arrive
	head    int                    // index of the oldest once the ring is full
	size    int                    // the capacity
	dropped int                    // overwritten so far
}

// add appends dl and reports whether the oldest letter was dropped for it.
func (r *deadLetters) add(dl transport.DeadLetter) (dropped bool) {
	if len(r.buf) < r.size {
		r.buf = append(r.buf, dl)
		return false
	}
	r.buf[r.head] = dl
	r.head = (r.head + 1) % r.size
	r.dropped++
	return true
}

// oldest returns copies of up to limit letters, oldest first (all of them
// when limit <= 0).
func (r *deadLetters) oldest(limit int) []transport.DeadLetter {
	n := len(r.buf)
	if limit > 0 && limit < n {
		n = limit
	}
	out := make([]transport.DeadLetter, 0, n)
	for i := range n {
		dl := r.buf[(r.head+i)%len(r.buf)]
		dl.Message = dl.Message.Clone() // callers must not reach the stored maps
		out = append(out, dl)
	}
	return out
}
