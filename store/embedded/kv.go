package embedded

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// This file maps the store's buckets onto Pebble's one ordered key space:
// every bucket is a one-byte key prefix. A bucket reads through a
// pebble.Reader (the writer's indexed batch, which sees its own writes, or
// a reader's durable snapshot) and writes into the writer's batch.

// Bucket prefixes. The order of the buckets in the key space does not
// matter; what matters is that no two share a byte and that they never
// change within a stored format.
const (
	prefixCommits     byte = 0x01
	prefixHeads       byte = 0x02
	prefixHandled     byte = 0x03
	prefixOutbox      byte = 0x04
	prefixOutboxIndex byte = 0x05
	prefixTimers      byte = 0x06
	prefixTimerIndex  byte = 0x07
	prefixSnapshots   byte = 0x08
	prefixInfo        byte = 0x09
	prefixSubjectKeys byte = 0x0a
)

// maxKeySize bounds a bucket key (a stream name, a message, timer or
// subject ID with what the layout adds to it): 32 KiB, so that keys stay
// small next to the values and the limit is the same as stored format 1's.
const maxKeySize = 32 << 10

// errReadOnly is what a write through a read view's bucket returns.
var errReadOnly = errors.New("write through a read-only view")

// bucket is one key space of a view of the store.
type bucket struct {
	prefix byte
	r      pebble.Reader
	w      *pebble.Batch // nil in a read view
}

// key is k with the bucket's prefix.
func (b bucket) key(k []byte) []byte {
	out := make([]byte, 1+len(k))
	out[0] = b.prefix
	copy(out[1:], k)
	return out
}

// Get returns a copy of k's value, or nil when the bucket has no k.
func (b bucket) Get(k []byte) ([]byte, error) {
	v, closer, err := b.r.Get(b.key(k))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get %x: %w", k, err)
	}
	out := append(make([]byte, 0, len(v)), v...)
	if err := closer.Close(); err != nil {
		return nil, fmt.Errorf("get %x: %w", k, err)
	}
	return out, nil
}

// Put sets k to v in the writer's batch.
func (b bucket) Put(k, v []byte) error {
	if b.w == nil {
		return errReadOnly
	}
	if len(k) > maxKeySize {
		return fmt.Errorf("%w: key is %d bytes, limit %d", errKeyTooLarge, len(k), maxKeySize)
	}
	return b.w.Set(b.key(k), v, nil)
}

// Delete removes k in the writer's batch (a no-op when k is absent).
func (b bucket) Delete(k []byte) error {
	if b.w == nil {
		return errReadOnly
	}
	return b.w.Delete(b.key(k), nil)
}

// errKeyTooLarge is what Put returns for a key over maxKeySize.
var errKeyTooLarge = errors.New("key too large")

// Cursor returns an iterator over the bucket's keys in byte order. Close
// it, and check its error, when done.
func (b bucket) Cursor() (*cursor, error) {
	return b.newCursor([]byte{b.prefix}, []byte{b.prefix + 1})
}

// Range returns an iterator over the bucket's keys k with from <= k < to,
// in byte order; tight bounds let Pebble skip the table files outside
// them. Close it, and check its error, when done.
func (b bucket) Range(from, to []byte) (*cursor, error) {
	return b.newCursor(b.key(from), b.key(to))
}

func (b bucket) newCursor(lower, upper []byte) (*cursor, error) {
	it, err := b.r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("open iterator: %w", err)
	}
	return &cursor{it: it, prefix: b.prefix}, nil
}

// cursor walks one bucket. The key and value it returns are valid until
// its next move; First, Seek and Next return a nil key at the end (or on
// an error, which Close returns).
type cursor struct {
	it     *pebble.Iterator
	prefix byte
	err    error
}

// First moves to the bucket's first key.
func (c *cursor) First() (k, v []byte) { return c.at(c.it.First()) }

// Seek moves to the first key at or after k.
func (c *cursor) Seek(k []byte) (key, v []byte) {
	return c.at(c.it.SeekGE(bucket{prefix: c.prefix}.key(k)))
}

// Next moves to the next key.
func (c *cursor) Next() (k, v []byte) { return c.at(c.it.Next()) }

func (c *cursor) at(valid bool) (k, v []byte) {
	if !valid {
		return nil, nil
	}
	v, err := c.it.ValueAndErr()
	if err != nil {
		c.err = err
		return nil, nil
	}
	return c.it.Key()[1:], v
}

// Close releases the iterator and returns the first error of the walk.
func (c *cursor) Close() error {
	err := c.it.Close()
	if c.err != nil {
		return fmt.Errorf("iterate: %w", c.err)
	}
	if err != nil {
		return fmt.Errorf("iterate: %w", err)
	}
	return nil
}

// txBuckets are the buckets of one view: the writer's batch or a read
// snapshot.
type txBuckets struct {
	commits, heads, handled, outbox, outboxIndex, timers, timerIndex, snapshots, info, subjectKeys bucket
}

// bucketsOf returns the buckets reading through r and, when w is not nil,
// writing into w.
func bucketsOf(r pebble.Reader, w *pebble.Batch) txBuckets {
	mk := func(p byte) bucket { return bucket{prefix: p, r: r, w: w} }
	return txBuckets{
		commits: mk(prefixCommits), heads: mk(prefixHeads), handled: mk(prefixHandled),
		outbox: mk(prefixOutbox), outboxIndex: mk(prefixOutboxIndex),
		timers: mk(prefixTimers), timerIndex: mk(prefixTimerIndex),
		snapshots: mk(prefixSnapshots), info: mk(prefixInfo), subjectKeys: mk(prefixSubjectKeys),
	}
}
