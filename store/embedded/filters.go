package embedded

import (
	"fmt"
	"sync"

	"github.com/bits-and-blooms/bloom/v3"
	"github.com/cockroachdb/pebble/v2"
)

// Lookups of keys that do not exist are the store's most expensive reads:
// Pebble has to look in every memtable and in every level (its sstable
// bloom filters spare it the data blocks, not the iterators), 5-20 µs
// each, and a saga costs more than a dozen of them (the heads of its
// participants' fresh streams, read by their actors and by the writer,
// the outbox index entry of every message it sends, the timer index entry
// of every timer it sets). In-memory filters answer most of them instead. Both only ever say "absent" for a
// key the store does not hold; everything else goes to Pebble:
//
//   - streams: a bloom filter of every stream with a head. Streams are
//     never deleted, so it only grows; a stream is added while its first
//     commit is applied, before the batch is durable and published, so a
//     reader that sees the stream in a snapshot finds it in the filter.
//   - outbox and timer IDs: the IDs that have an outbox or timer index
//     entry, exactly (outbox entries wait only until their message is
//     published, timers until they fire or are cancelled; the sets hold
//     what the store holds). An ID is added when its entry is written and
//     removed once the batch that deleted the entry is durable, so a
//     failed batch leaves a set a superset of the store's index. Only the
//     writer goroutine uses them.
//
// Both are filled at Open from the keys on disk.

// streamFilterCapacity and streamFilterFalsePositives size the stream
// filter: about 1.2 MiB, a 1% false-positive rate at a million streams.
// Past its capacity the filter answers "maybe" more and more often, which
// costs the lookups it saves and never a wrong answer.
const (
	streamFilterCapacity       = 1_000_000
	streamFilterFalsePositives = 0.01
)

// streamFilter is the bloom filter of streams with a head. It is safe for
// concurrent use.
type streamFilter struct {
	mu sync.RWMutex
	f  *bloom.BloomFilter
}

func newStreamFilter() *streamFilter {
	return &streamFilter{f: bloom.NewWithEstimates(streamFilterCapacity, streamFilterFalsePositives)}
}

// add records that stream has a head.
func (sf *streamFilter) add(stream string) {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	sf.f.AddString(stream)
}

// mayHave is false only when stream has no head.
func (sf *streamFilter) mayHave(stream string) bool {
	sf.mu.RLock()
	defer sf.mu.RUnlock()
	return sf.f.TestString(stream)
}

// indexedIDs is the set of IDs with an entry in an index bucket (the
// outbox index, the timer index), and the IDs whose entries the batch
// being built deletes (removed from the set once it is durable). Only the
// writer goroutine uses it.
type indexedIDs struct {
	pending  map[string]struct{}
	deleting map[string]struct{}
}

func newIndexedIDs() *indexedIDs {
	return &indexedIDs{pending: make(map[string]struct{}), deleting: make(map[string]struct{})}
}

// mayHave is false only when id has no index entry.
func (o *indexedIDs) mayHave(id string) bool {
	_, ok := o.pending[id]
	return ok
}

// written records an index entry for id in the batch being built.
func (o *indexedIDs) written(id string) {
	o.pending[id] = struct{}{}
	delete(o.deleting, id)
}

// deleted records that the batch being built deletes id's index entry.
func (o *indexedIDs) deleted(id string) { o.deleting[id] = struct{}{} }

// settle ends a batch: durable says whether it was committed. The IDs it
// wrote stay either way (a superset is safe); those it deleted leave the
// set only when it is durable.
func (o *indexedIDs) settle(durable bool) {
	if durable {
		for id := range o.deleting {
			delete(o.pending, id)
		}
	}
	clear(o.deleting)
}

// filters are the store's in-memory answers to lookups of absent keys.
type filters struct {
	streams *streamFilter
	// outbox and timers are writer-only.
	outbox, timers *indexedIDs
}

// settle ends a batch (see indexedIDs.settle).
func (f filters) settle(durable bool) {
	f.outbox.settle(durable)
	f.timers.settle(durable)
}

// loadFilters fills the filters from the keys in db.
func loadFilters(db *pebble.DB) (filters, error) {
	f := filters{streams: newStreamFilter(), outbox: newIndexedIDs(), timers: newIndexedIDs()}
	b := bucketsOf(db, nil)
	if err := eachKey(b.heads, func(k []byte) { f.streams.f.Add(k) }); err != nil {
		return filters{}, fmt.Errorf("read stream heads: %w", err)
	}
	if err := eachKey(b.outboxIndex, func(k []byte) { f.outbox.pending[string(k)] = struct{}{} }); err != nil {
		return filters{}, fmt.Errorf("read outbox index: %w", err)
	}
	if err := eachKey(b.timerIndex, func(k []byte) { f.timers.pending[string(k)] = struct{}{} }); err != nil {
		return filters{}, fmt.Errorf("read timer index: %w", err)
	}
	return f, nil
}

// eachKey calls fn with every key of bucket b (without the prefix; fn
// must not keep it).
func eachKey(b bucket, fn func(k []byte)) error {
	c, err := b.Cursor()
	if err != nil {
		return err
	}
	return closing(c, func() error {
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			fn(k)
		}
		return nil
	})
}
