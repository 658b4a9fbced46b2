package embedded

import (
	"encoding/binary"
	"math"
	"time"
)

// The buckets (kv.go gives each its key prefix) and their keys:
//   - commits: stream 0x00 version(8, big-endian) -> commit JSON.
//   - heads: stream -> version(8) ++ meta JSON (empty when no commit of
//     the stream carried a Meta yet).
//   - handled: stream 0x00 message ID -> version(8) of the commit that
//     recorded it.
//   - outbox: at(8, unix nanos) ++ seq(8) -> OutboxEntry JSON. The key
//     orders entries by commit time, then by write order.
//   - outbox index: message ID -> one or more 16-byte outbox keys.
//   - timers: due(8, unix nanos) ++ timer ID -> Timer JSON.
//   - timer index: timer ID -> its key in timers.
//   - snapshots: stream -> Snapshot JSON, the stream's latest snapshot
//     (derived data, written apart from commits).
//   - subject keys: subject -> SubjectKey JSON.
//   - info: store-level facts: the format version and the outbox
//     sequence (migrate.go).

// FormatVersion is the stored format this release writes and reads: the
// value of the key "format" in the info bucket, written when the store is
// made. Open migrates format 1 (a bbolt file) and refuses any other format
// with store.ErrUnsupportedFormat.
const FormatVersion = "2"

// streamPrefix is stream ++ 0x00: the common prefix of a stream's commit
// and handled keys. Stream names may not contain 0x00 (see checkNames), so
// no stream's prefix is a prefix of another stream's keys.
func streamPrefix(stream string) []byte {
	k := make([]byte, 0, len(stream)+1+8)
	k = append(k, stream...)
	return append(k, 0)
}

// commitKey is stream ++ 0x00 ++ big-endian version.
func commitKey(stream string, version uint64) []byte {
	return binary.BigEndian.AppendUint64(streamPrefix(stream), version)
}

// handledKey is stream ++ 0x00 ++ message ID.
func handledKey(stream, msgID string) []byte {
	return append(streamPrefix(stream), msgID...)
}

// timerKey is big-endian due time in unix nanoseconds ++ timer ID.
func timerKey(due time.Time, id string) []byte {
	k := make([]byte, 0, 8+len(id))
	k = binary.BigEndian.AppendUint64(k, sortableNanos(due))
	return append(k, id...)
}

// outboxKey is the big-endian commit time (sortableNanos) ++ the
// big-endian sequence number.
func outboxKey(atNanos, seq uint64) []byte {
	k := make([]byte, 0, outboxKeyLen)
	k = binary.BigEndian.AppendUint64(k, atNanos)
	return binary.BigEndian.AppendUint64(k, seq)
}

// outboxKeyLen is the length of an outbox key.
const outboxKeyLen = 16

// sortableNanos maps t to an unsigned number that sorts like t: times before
// 1970 (including the zero time) map to 0 and times past 2262 to the
// maximum, where UnixNano is undefined.
func sortableNanos(t time.Time) uint64 {
	switch {
	case t.Before(minNanoTime):
		return 0
	case t.After(maxNanoTime):
		return math.MaxUint64
	default:
		return uint64(t.UnixNano())
	}
}

var (
	minNanoTime = time.Unix(0, 0)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// headValue encodes a stream head: its version and its latest Meta JSON.
func headValue(version uint64, metaJSON []byte) []byte {
	v := make([]byte, 0, 8+len(metaJSON))
	v = binary.BigEndian.AppendUint64(v, version)
	return append(v, metaJSON...)
}

// parseHead splits a head value. The returned meta slice aliases v.
func parseHead(v []byte) (version uint64, metaJSON []byte, ok bool) {
	if len(v) < 8 {
		return 0, nil, false
	}
	return binary.BigEndian.Uint64(v[:8]), v[8:], true
}
