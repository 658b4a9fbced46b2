package embedded

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sagaflow/sagaflow/internal/recordjson"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

// This file is the write path. Every write is a request on s.reqs; one
// goroutine (runWriter) takes up to cfg.maxBatch queued requests, applies
// them one after the other to one Pebble indexed batch (which reads its own
// writes), commits it (one WAL write and fsync for the lot), publishes the
// new durable state to readers, and answers each caller. Each request is checked
// against the transaction's state, which includes the requests before it in
// the same batch, before anything of it is written: a refused request
// writes nothing, and the others commit. If writing a request fails half
// way, the transaction is rolled back and the batch is applied again
// without it.

// opKind is what a request asks the writer to do.
type opKind uint8

const (
	opAppend opKind = iota + 1
	opMarkDispatched
	opDeleteTimers
	opSaveSnapshot
	opCreateKey
	opDeleteKey
)

// maxIDsPerRequest bounds the IDs one MarkDispatched or DeleteTimers
// request carries; longer lists are split.
const maxIDsPerRequest = 1024

// request is one queued write. done has room for the one answer, so the
// writer never blocks on a caller that stopped waiting.
type request struct {
	ctx    context.Context
	op     opKind
	commit *encodedCommit   // opAppend
	ids    []string         // opMarkDispatched, opDeleteTimers
	snap   *encodedSnapshot // opSaveSnapshot
	key    *subjectKeyWrite // opCreateKey, opDeleteKey
	done   chan error
}

// encodedCommit is a commit turned into the keys and values the writer
// puts, so that encoding runs on the callers' goroutines, not the writer's.
type encodedCommit struct {
	stream      string
	version     uint64
	key         []byte   // commits key
	value       []byte   // commit JSON
	handledIDs  []string // for error messages
	handledKeys [][]byte
	outbox      []encodedOutbox
	timers      []encodedTimer
	cancel      []string
	// head is the stream's new head value (version, then Meta JSON; see
	// headValue) when the commit carries a Meta, else nil: the head then
	// keeps the Meta it has.
	head []byte
	// arena is the pooled buffer that value, the outbox and timer values
	// and head are slices of (see recordArenas).
	arena *[]byte
}

// recordArenas pools the buffers commits are encoded into. A commit's
// values are slices of one buffer, which the writer gives back once it
// has answered the commit's request: until then a round may apply the
// request again (commitBatch), and after that nothing reads the values,
// as Pebble's batch has copied them. A caller that stopped waiting
// leaves the request with the writer, which still gives the buffer back;
// a request that never reached the writer leaves its buffer to the GC.
var recordArenas = sync.Pool{New: func() any {
	b := make([]byte, 0, recordArenaBytes)
	return &b
}}

// recordArenaBytes is a new arena's room, enough for a saga commit with
// its outbox and timer entries; maxPooledArenaBytes is the largest arena
// given back, so that one huge commit does not keep its buffer alive.
const (
	recordArenaBytes    = 8 << 10
	maxPooledArenaBytes = 64 << 10
)

// release gives c's arena back to the pool. c's values must not be read
// afterwards.
func (c *encodedCommit) release() {
	if c == nil || c.arena == nil {
		return
	}
	if cap(*c.arena) <= maxPooledArenaBytes {
		*c.arena = (*c.arena)[:0]
		recordArenas.Put(c.arena)
	}
	c.arena, c.value, c.head = nil, nil, nil
	for i := range c.outbox {
		c.outbox[i].value = nil
	}
	for i := range c.timers {
		c.timers[i].value = nil
	}
}

type encodedOutbox struct {
	id    string
	at    uint64 // sortableNanos of the commit time
	value []byte // OutboxEntry JSON
}

type encodedTimer struct {
	id    string
	key   []byte
	value []byte // Timer JSON
}

// Append writes c atomically (I1) in the next group commit. It fails with
// store.ErrConcurrency when the stream already has a commit at c.Version,
// with store.ErrInvalidCommit when c is malformed or c.Version is not the
// stream's next version, and with store.ErrAlreadyHandled when c names a
// message the stream already handled; then nothing of c is written.
//
// A timer whose ID is already set is replaced; c.CancelTimers are applied
// before c.Timers, so a commit can reschedule a timer by cancelling and
// setting the same ID. Stream names may not contain the byte 0x00.
//
// When ctx ends before the writer takes the commit, nothing is written.
// When it ends while the commit is being written, Append returns ctx's
// error and the commit may still become durable: reload the stream.
func (s *Store) Append(ctx context.Context, c store.Commit) error {
	if err := s.append(ctx, c); err != nil {
		return fmt.Errorf("append %s v%d: %w", c.Stream, c.Version, err)
	}
	return nil
}

func (s *Store) append(ctx context.Context, c store.Commit) error {
	if err := store.CheckAppend(ctx, s.closed.Load(), c); err != nil {
		return err
	}
	var enc *encodedCommit
	if err := s.recovered("encode commit", func() (err error) {
		enc, err = s.encodeCommit(c)
		return err
	}); err != nil {
		return err
	}
	r := &request{ctx: ctx, op: opAppend, commit: enc, done: make(chan error, 1)}
	return s.submit(ctx, r)
}

// MarkDispatched removes the outbox entries of the given message IDs from
// the pending set (I4); unknown IDs are ignored. It rides on the writer's
// next group commit and returns once the removal is durable.
func (s *Store) MarkDispatched(ctx context.Context, ids ...string) error {
	if err := s.removeIDs(ctx, opMarkDispatched, ids); err != nil {
		return fmt.Errorf("mark %d outbox entries dispatched: %w", len(ids), err)
	}
	return nil
}

// DeleteTimers removes fired timers (I5); unknown IDs are ignored. It rides
// on the writer's next group commit and returns once the removal is durable.
func (s *Store) DeleteTimers(ctx context.Context, ids ...string) error {
	if err := s.removeIDs(ctx, opDeleteTimers, ids); err != nil {
		return fmt.Errorf("delete %d timers: %w", len(ids), err)
	}
	return nil
}

func (s *Store) removeIDs(ctx context.Context, op opKind, ids []string) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	clean := make([]string, 0, len(ids))
	for _, id := range ids {
		if id != "" && len(id) <= maxKeySize {
			clean = append(clean, id)
		}
	}
	var reqs []*request
	for len(clean) > 0 {
		n := min(len(clean), maxIDsPerRequest)
		r := &request{ctx: ctx, op: op, ids: clean[:n:n], done: make(chan error, 1)}
		clean = clean[n:]
		if err := s.enqueue(ctx, r); err != nil {
			return err
		}
		reqs = append(reqs, r)
	}
	for _, r := range reqs {
		if err := s.await(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// enqueue hands r to the writer, waiting while the queue is full.
func (s *Store) enqueue(ctx context.Context, r *request) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return store.ErrClosed
	}
	select {
	case s.reqs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// submit hands r to the writer and waits for its answer.
func (s *Store) submit(ctx context.Context, r *request) error {
	if err := s.enqueue(ctx, r); err != nil {
		return err
	}
	return s.await(ctx, r)
}

// await waits for the writer's answer to r. The writer answers every
// request it was handed, also while closing.
func (s *Store) await(ctx context.Context, r *request) error {
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("stopped waiting, the write may still complete: %w", ctx.Err())
	}
}

// tooLong refuses an ID that, with extra bytes of its key, makes a key
// longer than maxKeySize.
func tooLong(what, id string, extra int) error {
	if len(id)+extra > maxKeySize {
		return fmt.Errorf("%w: %s is %d bytes, limit %d", store.ErrInvalidCommit, what, len(id), maxKeySize-extra)
	}
	return nil
}

// encodeCommit checks what the store's key layout needs beyond
// store.ValidateCommit and encodes c's keys and values.
func (s *Store) encodeCommit(c store.Commit) (*encodedCommit, error) {
	if strings.IndexByte(c.Stream, 0) >= 0 {
		return nil, fmt.Errorf("%w: stream name contains the byte 0x00", store.ErrInvalidCommit)
	}
	if err := tooLong("stream name", c.Stream, 1+8); err != nil {
		return nil, err
	}
	arena := recordArenas.Get().(*[]byte)
	enc, err := s.encodeCommitInto(arena, c)
	if err != nil {
		*arena = (*arena)[:0]
		recordArenas.Put(arena)
		return nil, err
	}
	return enc, nil
}

// encodeCommitInto encodes c's values into the arena: first the commit,
// then each outbox entry, timer and the head; their slices are cut once
// the arena has stopped growing.
func (s *Store) encodeCommitInto(arena *[]byte, c store.Commit) (*encodedCommit, error) {
	buf, err := recordjson.MarshalAppend((*arena)[:0], c)
	if err != nil {
		return nil, fmt.Errorf("%w: encode: %w", store.ErrInvalidCommit, err)
	}
	if len(buf) > s.cfg.maxCommitBytes {
		return nil, fmt.Errorf("%w: %w: encoded commit is %d bytes, limit %d",
			store.ErrInvalidCommit, message.ErrPayloadTooLarge, len(buf), s.cfg.maxCommitBytes)
	}
	// ends[i] is where the arena's i-th value ends: the commit, the outbox
	// entries, the timers, then the head.
	ends := make([]int, 0, 2+len(c.Outbox)+len(c.Timers))
	ends = append(ends, len(buf))
	enc := &encodedCommit{
		stream:     c.Stream,
		version:    c.Version,
		key:        commitKey(c.Stream, c.Version),
		handledIDs: c.Handled,
		cancel:     c.CancelTimers,
		arena:      arena,
	}
	for _, id := range c.Handled {
		if err := tooLong("handled message ID", id, len(c.Stream)+1); err != nil {
			return nil, err
		}
		enc.handledKeys = append(enc.handledKeys, handledKey(c.Stream, id))
	}
	for _, m := range c.Outbox {
		if err := tooLong("outbox message ID", m.ID, 0); err != nil {
			return nil, err
		}
		if buf, err = recordjson.MarshalAppend(buf, store.OutboxEntry{ID: m.ID, Stream: c.Stream, Version: c.Version, Message: m, At: c.At}); err != nil {
			return nil, fmt.Errorf("%w: encode outbox message %q: %w", store.ErrInvalidCommit, m.ID, err)
		}
		ends = append(ends, len(buf))
		enc.outbox = append(enc.outbox, encodedOutbox{id: m.ID, at: sortableNanos(c.At)})
	}
	for _, t := range c.Timers {
		if err := tooLong("timer ID", t.ID, 8); err != nil {
			return nil, err
		}
		if buf, err = recordjson.MarshalAppend(buf, t); err != nil {
			return nil, fmt.Errorf("%w: encode timer %q: %w", store.ErrInvalidCommit, t.ID, err)
		}
		ends = append(ends, len(buf))
		enc.timers = append(enc.timers, encodedTimer{id: t.ID, key: timerKey(t.DueAt, t.ID)})
	}
	if c.Meta != nil {
		buf = binary.BigEndian.AppendUint64(buf, c.Version)
		if buf, err = recordjson.MarshalAppend(buf, c.Meta); err != nil {
			return nil, fmt.Errorf("%w: encode meta: %w", store.ErrInvalidCommit, err)
		}
		ends = append(ends, len(buf))
	}
	*arena = buf
	// Cut the values now that buf no longer moves.
	cut := func(i int) []byte {
		from := 0
		if i > 0 {
			from = ends[i-1]
		}
		return buf[from:ends[i]:ends[i]]
	}
	enc.value = cut(0)
	for i := range enc.outbox {
		enc.outbox[i].value = cut(1 + i)
	}
	for i := range enc.timers {
		enc.timers[i].value = cut(1 + len(enc.outbox) + i)
	}
	if c.Meta != nil {
		enc.head = cut(len(ends) - 1)
	}
	return enc, nil
}

// runWriter is the writer goroutine. It ends when Close has closed the
// queue and every queued request has been answered.
func (s *Store) runWriter() {
	defer close(s.writerDone)
	defer func() {
		if s.roundBatch != nil {
			_ = s.roundBatch.Close()
		}
	}()
	batch := make([]*request, 0, s.cfg.maxBatch)
	for r := range s.reqs {
		batch = takeRound(s.reqs, append(batch[:0], r), s.cfg.maxBatch)
		s.commitBatch(batch)
		clear(batch)
	}
}

// takeRound adds to batch (which holds the round's first request) what
// reqs holds now, without waiting, until the round has maxBatch requests
// or about maxRoundBytes of writes.
func takeRound(reqs <-chan *request, batch []*request, maxBatch int) []*request {
	bytes := 0
	for _, r := range batch {
		bytes += r.size()
	}
	for len(batch) < maxBatch && bytes < maxRoundBytes {
		select {
		case r, ok := <-reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
			bytes += r.size()
		default:
			return batch
		}
	}
	return batch
}

// maxRoundBytes ends a round's filling once its requests put about this
// many bytes. Pebble drops a batch's buffer on Reset when it has grown past
// 1 MiB, and the next rounds then grow a new one from 1 KiB by doubling: the
// few rounds over 1 MiB at full load (a burst of 512 requests) were a fifth
// of the engine's allocated bytes. The rest of the queue waits for the next
// round, a fsync later.
const maxRoundBytes = 512 << 10

// size is about how many bytes r puts into a round's batch.
func (r *request) size() int {
	n := 64 // keys, record headers, and what the small requests put
	switch {
	case r.commit != nil:
		c := r.commit
		n += len(c.key) + len(c.value) + len(c.head) + 16*len(c.cancel)
		for _, k := range c.handledKeys {
			n += len(k) + 8
		}
		for _, o := range c.outbox {
			n += len(o.value) + len(o.id) + 32
		}
		for _, t := range c.timers {
			n += len(t.value) + 2*len(t.key)
		}
	case r.snap != nil:
		n += len(r.snap.value)
	case r.key != nil:
		n += len(r.key.value)
	}
	return n + 32*len(r.ids)
}

// writeFailure is a request whose writes failed part way; the batch must
// be dropped and the requests applied again without it.
type writeFailure struct {
	index int
	err   error
}

func (w *writeFailure) Error() string { return fmt.Sprintf("request %d: %v", w.index, w.err) }

// txn is one round of the writer: the batch's buckets and the outbox
// sequence as the batch leaves it.
type txn struct {
	b         txBuckets
	outboxSeq uint64
	filters
}

// nextOutboxSeq returns the next outbox sequence number.
func (t *txn) nextOutboxSeq() uint64 {
	t.outboxSeq++
	return t.outboxSeq
}

// commitBatch applies batch in one Pebble batch and answers every request.
func (s *Store) commitBatch(batch []*request) {
	start := time.Now()
	defer func() { s.stats.busyNanos.Add(int64(time.Since(start))) }()
	results := make([]error, len(batch))
	active := make([]bool, len(batch))
	live := 0
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i] = fmt.Errorf("not written: %w", err)
			continue
		}
		active[i] = true
		live++
	}
	// Each round either commits, fails as a whole, or drops one request
	// whose writes failed, so live+1 rounds are enough.
	for round := 0; live > 0 && round <= len(batch); round++ {
		err := s.recovered("write batch", func() error {
			return s.writeRound(batch, active, results)
		})
		var wf *writeFailure
		if errors.As(err, &wf) {
			results[wf.index] = fmt.Errorf("write failed, nothing written: %w", wf.err)
			active[wf.index] = false
			live--
			continue
		}
		if err != nil {
			s.stats.failedTxs.Add(1)
			for i := range batch {
				if active[i] {
					results[i] = fmt.Errorf("write batch of %d requests failed, nothing written: %w", live, err)
				}
			}
			break
		}
		s.stats.batches.Add(1)
		for i, r := range batch {
			if active[i] && results[i] == nil && r.op == opAppend {
				s.stats.commits.Add(1)
			}
		}
		break
	}
	s.stats.requests.Add(uint64(len(batch)))
	for i, r := range batch {
		r.done <- results[i]
		r.commit.release()
	}
}

// writeRound applies the active requests of batch to a new Pebble batch
// and commits it durably, then publishes the new state to readers. A
// *writeFailure names a request to drop; any other error fails the round,
// with nothing written.
func (s *Store) writeRound(batch []*request, active []bool, results []error) (err error) {
	wb := s.roundBatch
	if wb == nil {
		wb = s.db.NewIndexedBatch()
	}
	s.roundBatch = nil
	// A round that did not reach Commit, or whose Commit returned, gives
	// the batch back emptied; one whose Commit failed or panicked closes
	// it, as Pebble may still hold it.
	reuse := true
	defer func() {
		if !reuse {
			_ = wb.Close()
			return
		}
		wb.Reset()
		s.roundBatch = wb
	}()
	durable := false
	defer func() { s.filters.settle(durable) }()
	t := &txn{b: bucketsOf(wb, wb), outboxSeq: s.outboxSeq, filters: s.filters}
	for i, r := range batch {
		if !active[i] {
			continue
		}
		refused, err := applyRequest(t, r)
		if err != nil {
			return &writeFailure{index: i, err: err}
		}
		results[i] = refused
	}
	if wb.Empty() {
		return nil // every request refused: nothing to make durable
	}
	if t.outboxSeq != s.outboxSeq {
		if err := t.b.info.Put(outboxSeqKey, binary.BigEndian.AppendUint64(nil, t.outboxSeq)); err != nil {
			return fmt.Errorf("put outbox sequence: %w", err)
		}
	}
	syncStart := time.Now()
	reuse = false
	err = wb.Commit(s.writeOpts)
	s.stats.syncNanos.Add(int64(time.Since(syncStart)))
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	reuse = true
	durable = true
	s.outboxSeq = t.outboxSeq
	s.publishView()
	return nil
}

// applyRequest applies one request to the round's batch. refused is the
// request's own error (nothing of it written); err is a failure part way
// through writing it, which spoils the batch.
func applyRequest(t *txn, r *request) (refused, err error) {
	b := t.b
	switch r.op {
	case opAppend:
		return applyCommit(t, r.commit)
	case opMarkDispatched:
		for _, id := range r.ids {
			if err := deleteOutboxEntries(t, id); err != nil {
				return nil, err
			}
		}
		return nil, nil
	case opDeleteTimers:
		for _, id := range r.ids {
			if err := deleteTimer(t, id); err != nil {
				return nil, err
			}
		}
		return nil, nil
	case opSaveSnapshot:
		return nil, putSnapshot(b, r.snap)
	case opCreateKey:
		return nil, createKey(b, r.key)
	case opDeleteKey:
		return nil, b.subjectKeys.Delete([]byte(r.key.subject))
	default:
		return fmt.Errorf("unknown write operation %d", r.op), nil
	}
}

// applyCommit checks c against the stream's head and handled IDs, then
// writes all of it. Checks come first, so a refused commit writes nothing.
func applyCommit(t *txn, c *encodedCommit) (refused, err error) {
	b := t.b
	var current uint64
	var metaJSON, head []byte
	if t.streams.mayHave(c.stream) {
		if head, err = b.heads.Get([]byte(c.stream)); err != nil {
			return nil, fmt.Errorf("read stream head: %w", err)
		}
	}
	if head != nil {
		v, m, ok := parseHead(head)
		if !ok {
			return fmt.Errorf("stream head is corrupt (%d bytes)", len(head)), nil
		}
		current, metaJSON = v, m
	}
	// A stream's commits are the versions up to its head, so the head
	// alone says whether c.version is taken.
	switch {
	case c.version <= current:
		return fmt.Errorf("%w: stream is at v%d", store.ErrConcurrency, current), nil
	case c.version > current+1:
		return fmt.Errorf("%w: stream is at v%d, so the next commit is v%d", store.ErrInvalidCommit, current, current+1), nil
	}
	// Handled markers are written only with their stream's commits, so a
	// stream without a head has none to look up: a fresh stream (every
	// participant's first command) skips the lookups.
	if head != nil {
		if refused, err := refuseHandled(b, c); refused != nil || err != nil {
			return refused, err
		}
	}

	// From here on every error is a write failure.
	if err := b.commits.Put(c.key, c.value); err != nil {
		return nil, fmt.Errorf("put commit: %w", err)
	}
	version := binary.BigEndian.AppendUint64(nil, c.version)
	for _, k := range c.handledKeys {
		if err := b.handled.Put(k, version); err != nil {
			return nil, fmt.Errorf("put handled message: %w", err)
		}
	}
	for _, m := range c.outbox {
		if err := putOutboxEntry(t, m); err != nil {
			return nil, err
		}
	}
	for _, id := range c.cancel {
		if err := deleteTimer(t, id); err != nil {
			return nil, err
		}
	}
	for _, tm := range c.timers {
		if err := putTimer(t, tm); err != nil {
			return nil, err
		}
	}
	newHead := c.head
	if newHead == nil {
		newHead = headValue(c.version, metaJSON)
	}
	if err := b.heads.Put([]byte(c.stream), newHead); err != nil {
		return nil, fmt.Errorf("put stream head: %w", err)
	}
	if head == nil {
		t.streams.add(c.stream) // before the batch is published (filters.go)
	}
	return nil, nil
}

// refuseHandled refuses c with ErrAlreadyHandled when its stream has
// handled one of c's messages already (I3).
func refuseHandled(b txBuckets, c *encodedCommit) (refused, err error) {
	for i, k := range c.handledKeys {
		v, err := b.handled.Get(k)
		if err != nil {
			return nil, fmt.Errorf("read handled message: %w", err)
		}
		if v != nil {
			var by uint64
			if len(v) == 8 {
				by = binary.BigEndian.Uint64(v)
			}
			return fmt.Errorf("%w: message %q was handled by v%d", store.ErrAlreadyHandled, c.handledIDs[i], by), nil
		}
	}
	return nil, nil
}

func putOutboxEntry(t *txn, m encodedOutbox) error {
	b := t.b
	key := outboxKey(m.at, t.nextOutboxSeq())
	if err := b.outbox.Put(key, m.value); err != nil {
		return fmt.Errorf("put outbox message %q: %w", m.id, err)
	}
	// The index value lists every pending entry with this message ID, so
	// that a duplicate ID cannot strand an entry MarkDispatched cannot reach.
	var old []byte
	if t.outbox.mayHave(m.id) {
		var err error
		if old, err = b.outboxIndex.Get([]byte(m.id)); err != nil {
			return fmt.Errorf("read outbox index of %q: %w", m.id, err)
		}
	}
	keys := make([]byte, 0, len(old)+outboxKeyLen)
	keys = append(append(keys, old...), key...)
	if err := b.outboxIndex.Put([]byte(m.id), keys); err != nil {
		return fmt.Errorf("index outbox message %q: %w", m.id, err)
	}
	t.outbox.written(m.id)
	return nil
}

func deleteOutboxEntries(t *txn, id string) error {
	if !t.outbox.mayHave(id) {
		return nil
	}
	b := t.b
	keys, err := b.outboxIndex.Get([]byte(id))
	if err != nil {
		return fmt.Errorf("read outbox index of %q: %w", id, err)
	}
	if keys == nil {
		return nil
	}
	for len(keys) >= outboxKeyLen {
		if err := b.outbox.Delete(keys[:outboxKeyLen]); err != nil {
			return fmt.Errorf("delete outbox message %q: %w", id, err)
		}
		keys = keys[outboxKeyLen:]
	}
	if err := b.outboxIndex.Delete([]byte(id)); err != nil {
		return fmt.Errorf("unindex outbox message %q: %w", id, err)
	}
	t.outbox.deleted(id)
	return nil
}

func putTimer(t *txn, tm encodedTimer) error {
	if err := deleteTimer(t, tm.id); err != nil {
		return err
	}
	if err := t.b.timers.Put(tm.key, tm.value); err != nil {
		return fmt.Errorf("put timer %q: %w", tm.id, err)
	}
	if err := t.b.timerIndex.Put([]byte(tm.id), tm.key); err != nil {
		return fmt.Errorf("index timer %q: %w", tm.id, err)
	}
	t.timers.written(tm.id)
	return nil
}

func deleteTimer(t *txn, id string) error {
	if id == "" || len(id) > maxKeySize || !t.timers.mayHave(id) {
		return nil
	}
	b := t.b
	key, err := b.timerIndex.Get([]byte(id))
	if err != nil {
		return fmt.Errorf("read timer index of %q: %w", id, err)
	}
	if key == nil {
		return nil
	}
	if err := b.timers.Delete(key); err != nil {
		return fmt.Errorf("delete timer %q: %w", id, err)
	}
	if err := b.timerIndex.Delete([]byte(id)); err != nil {
		return fmt.Errorf("unindex timer %q: %w", id, err)
	}
	t.timers.deleted(id)
	return nil
}

// encodedSnapshot is a snapshot ready for the writer.
type encodedSnapshot struct {
	stream  string
	version uint64
	value   []byte // Snapshot JSON
}

// SaveSnapshot stores snap as its stream's snapshot unless the stream has
// one at a later version. Snapshots are derived data: they ride on the
// writer's next group commit but are not part of any commit. It returns
// once the snapshot is durable (or was found older than the stored one).
func (s *Store) SaveSnapshot(ctx context.Context, snap store.Snapshot) error {
	if err := s.saveSnapshot(ctx, snap); err != nil {
		return fmt.Errorf("save snapshot of %s at v%d: %w", snap.Stream, snap.Version, err)
	}
	return nil
}

func (s *Store) saveSnapshot(ctx context.Context, snap store.Snapshot) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := store.ValidateSnapshot(snap); err != nil {
		return err
	}
	if len(snap.Stream) > maxKeySize {
		return fmt.Errorf("%w: stream name is %d bytes, limit %d", store.ErrInvalidCommit, len(snap.Stream), maxKeySize)
	}
	value, err := recordjson.Marshal(snap)
	if err != nil {
		return fmt.Errorf("%w: encode snapshot: %w", store.ErrInvalidCommit, err)
	}
	if len(value) > s.cfg.maxCommitBytes {
		return fmt.Errorf("%w: %w: encoded snapshot is %d bytes, limit %d",
			store.ErrInvalidCommit, message.ErrPayloadTooLarge, len(value), s.cfg.maxCommitBytes)
	}
	r := &request{ctx: ctx, op: opSaveSnapshot, snap: &encodedSnapshot{stream: snap.Stream, version: snap.Version, value: value}, done: make(chan error, 1)}
	return s.submit(ctx, r)
}

// putSnapshot writes snap unless the stored snapshot is at a later version.
func putSnapshot(b txBuckets, snap *encodedSnapshot) error {
	old, err := b.snapshots.Get([]byte(snap.stream))
	if err != nil {
		return fmt.Errorf("read stored snapshot of %s: %w", snap.stream, err)
	}
	if old != nil {
		var prev struct {
			Version uint64 `json:"version"`
		}
		if err := json.Unmarshal(old, &prev); err != nil {
			return fmt.Errorf("decode stored snapshot of %s: %w", snap.stream, err)
		}
		if prev.Version > snap.version {
			return nil
		}
	}
	if err := b.snapshots.Put([]byte(snap.stream), snap.value); err != nil {
		return fmt.Errorf("put snapshot of %s: %w", snap.stream, err)
	}
	return nil
}
