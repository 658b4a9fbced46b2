package embedded

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/sagaflow/sagaflow/internal/recordjson"
	"github.com/sagaflow/sagaflow/store"
)

// Reads run on the durable snapshot the writer publishes after each group
// commit (view.go): they see the state of the last finished batch and run
// alongside the writer.

// ctxCheckEvery is how many records a scan reads between checks of its
// context.
const ctxCheckEvery = 256

// Load returns the commits of stream with version >= from, in order (an
// empty slice for a stream without commits).
func (s *Store) Load(ctx context.Context, stream string, from uint64) ([]store.Commit, error) {
	out := []store.Commit{}
	if strings.IndexByte(stream, 0) >= 0 {
		return out, nil // no such stream can be written
	}
	err := s.view(ctx, func(b txBuckets) error {
		// The head bounds the scan: a stream without one has no commits
		// (a fresh stream is answered by the stream filter, filters.go),
		// and the commits end at its version.
		if !s.filters.streams.mayHave(stream) {
			return nil
		}
		head, err := b.heads.Get([]byte(stream))
		if err != nil || head == nil {
			return err
		}
		version, _, ok := parseHead(head)
		if !ok {
			return fmt.Errorf("corrupt stream head (%d bytes)", len(head))
		}
		if from > version {
			return nil
		}
		upper := commitKey(stream, version+1)
		if version == math.MaxUint64 {
			upper = append([]byte(stream), 1) // past every key of the stream
		}
		c, err := b.commits.Range(commitKey(stream, from), upper)
		if err != nil {
			return err
		}
		prefixLen := len(streamPrefix(stream))
		return closing(c, func() error {
			n := 0
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if n++; n%ctxCheckEvery == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
				var cm store.Commit
				if err := recordjson.Unmarshal(v, &cm); err != nil {
					return fmt.Errorf("decode commit v%d: %w", binary.BigEndian.Uint64(k[prefixLen:]), err)
				}
				out = append(out, cm)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load %s from v%d: %w", stream, from, err)
	}
	return out, nil
}

// Handled reports whether stream has handled message msgID (I3), and the
// version of the commit that recorded it.
func (s *Store) Handled(ctx context.Context, stream, msgID string) (uint64, bool, error) {
	var version uint64
	var ok bool
	err := s.view(ctx, func(b txBuckets) error {
		if strings.IndexByte(stream, 0) >= 0 {
			return nil
		}
		v, err := b.handled.Get(handledKey(stream, msgID))
		if err != nil || v == nil {
			return err
		}
		if len(v) != 8 {
			return fmt.Errorf("corrupt handled record (%d bytes)", len(v))
		}
		version, ok = binary.BigEndian.Uint64(v), true
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("handled %s by %s: %w", msgID, stream, err)
	}
	return version, ok, nil
}

// Info returns a stream's version and latest Meta (store.ErrNotFound for a
// stream without commits).
func (s *Store) Info(ctx context.Context, stream string) (store.StreamInfo, error) {
	var info store.StreamInfo
	err := s.view(ctx, func(b txBuckets) error {
		if strings.IndexByte(stream, 0) >= 0 {
			return store.ErrNotFound
		}
		head, err := b.heads.Get([]byte(stream))
		if err != nil {
			return err
		}
		if head == nil {
			return store.ErrNotFound
		}
		info, err = decodeHead([]byte(stream), head)
		return err
	})
	if err != nil {
		return store.StreamInfo{}, fmt.Errorf("info %s: %w", stream, err)
	}
	return info, nil
}

// List returns the streams whose Meta matches f, ordered by name. A Limit
// of 0 means 100; limits above 10000 mean 10000.
func (s *Store) List(ctx context.Context, f store.ListFilter) ([]store.StreamInfo, error) {
	limit := readLimit(f.Limit)
	out := []store.StreamInfo{}
	err := s.view(ctx, func(b txBuckets) error {
		c, err := b.heads.Cursor()
		if err != nil {
			return err
		}
		return closing(c, func() error {
			k, v := c.First()
			if f.After != "" {
				k, v = c.Seek([]byte(f.After))
				if k != nil && string(k) == f.After {
					k, v = c.Next()
				}
			}
			for n := 1; k != nil && len(out) < limit; k, v = c.Next() {
				if n++; n%ctxCheckEvery == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
				info, err := decodeHead(k, v)
				if err != nil {
					return err
				}
				if matches(f, info.Meta) {
					out = append(out, info)
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list streams after %q: %w", f.After, err)
	}
	return out, nil
}

func matches(f store.ListFilter, m store.Meta) bool {
	if f.Kind != "" && f.Kind != m.Kind {
		return false
	}
	if f.Type != "" && f.Type != m.Type {
		return false
	}
	if len(f.Status) == 0 {
		return true
	}
	for _, st := range f.Status {
		if st == m.Status {
			return true
		}
	}
	return false
}

func decodeHead(stream, head []byte) (store.StreamInfo, error) {
	version, metaJSON, ok := parseHead(head)
	if !ok {
		return store.StreamInfo{}, fmt.Errorf("stream %s: corrupt head (%d bytes)", stream, len(head))
	}
	info := store.StreamInfo{Stream: string(stream), Version: version}
	if len(metaJSON) > 0 {
		if err := recordjson.Unmarshal(metaJSON, &info.Meta); err != nil {
			return store.StreamInfo{}, fmt.Errorf("stream %s: decode meta: %w", stream, err)
		}
	}
	return info, nil
}

// PendingOutbox returns up to limit pending outbox entries whose commits
// were made at or before olderThan, oldest commit first (I4). A limit of 0
// or less means 100; limits above 10000 mean 10000.
func (s *Store) PendingOutbox(ctx context.Context, olderThan time.Time, limit int) ([]store.OutboxEntry, error) {
	limit = readLimit(limit)
	bound := sortableNanos(olderThan)
	out := []store.OutboxEntry{}
	err := s.view(ctx, func(b txBuckets) error {
		c, err := b.outbox.Cursor()
		if err != nil {
			return err
		}
		return closing(c, func() error {
			for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
				if len(k) != outboxKeyLen {
					return fmt.Errorf("corrupt outbox key (%d bytes)", len(k))
				}
				if binary.BigEndian.Uint64(k) > bound {
					break
				}
				var e store.OutboxEntry
				if err := recordjson.Unmarshal(v, &e); err != nil {
					return fmt.Errorf("decode outbox entry %x: %w", k, err)
				}
				if e.At.After(olderThan) {
					continue // same clamped key, later time (before 1970 or after 2262)
				}
				out = append(out, e)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("pending outbox up to %s: %w", olderThan.Format(time.RFC3339Nano), err)
	}
	return out, nil
}

// DueTimers returns up to limit timers due at or before now, earliest first
// (I5). A limit of 0 or less means 100; limits above 10000 mean 10000.
func (s *Store) DueTimers(ctx context.Context, now time.Time, limit int) ([]store.Timer, error) {
	limit = readLimit(limit)
	bound := sortableNanos(now)
	out := []store.Timer{}
	err := s.view(ctx, func(b txBuckets) error {
		c, err := b.timers.Cursor()
		if err != nil {
			return err
		}
		return closing(c, func() error {
			for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
				if len(k) < 8 {
					return fmt.Errorf("corrupt timer key (%d bytes)", len(k))
				}
				if binary.BigEndian.Uint64(k) > bound {
					break
				}
				var t store.Timer
				if err := recordjson.Unmarshal(v, &t); err != nil {
					return fmt.Errorf("decode timer %q: %w", k[8:], err)
				}
				if t.DueAt.After(now) {
					continue
				}
				out = append(out, t)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("due timers at %s: %w", now.Format(time.RFC3339Nano), err)
	}
	return out, nil
}

// NextTimer returns the earliest due time of any timer (ok false when there
// is none).
func (s *Store) NextTimer(ctx context.Context) (time.Time, bool, error) {
	var t store.Timer
	var ok bool
	err := s.view(ctx, func(b txBuckets) error {
		c, err := b.timers.Cursor()
		if err != nil {
			return err
		}
		return closing(c, func() error {
			k, v := c.First()
			if k == nil {
				return nil
			}
			if err := recordjson.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("decode timer %q: %w", k[min(8, len(k)):], err)
			}
			ok = true
			return nil
		})
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next timer: %w", err)
	}
	return t.DueAt, ok, nil
}

// readLimit maps a requested limit to the one a read uses.
func readLimit(n int) int {
	if n <= 0 {
		return defaultReadLimit
	}
	return min(n, maxReadLimit)
}

// LoadSnapshot returns the stream's latest snapshot (ok false when it has
// none).
func (s *Store) LoadSnapshot(ctx context.Context, stream string) (store.Snapshot, bool, error) {
	var snap store.Snapshot
	var ok bool
	err := s.view(ctx, func(b txBuckets) error {
		if stream == "" || len(stream) > maxKeySize {
			return nil
		}
		v, err := b.snapshots.Get([]byte(stream))
		if err != nil || v == nil {
			return err
		}
		if err := recordjson.Unmarshal(v, &snap); err != nil {
			return fmt.Errorf("decode snapshot: %w", err)
		}
		ok = true
		return nil
	})
	if err != nil {
		return store.Snapshot{}, false, fmt.Errorf("load snapshot of %s: %w", stream, err)
	}
	return snap, ok, nil
}

// closing runs fn, then closes c; it returns fn's error, else c's.
func closing(c *cursor, fn func() error) error {
	err := fn()
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	return err
}
