package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/sagaflow/sagaflow/store"
)

// Stored format 1 kept everything in one bbolt file, LegacyFileName, with
// one bucket per key space. Format 2 keeps the same keys and values in
// Pebble, each key prefixed with its bucket's byte (kv.go), so migrating
// is a copy: Open finds a format-1 file in a directory whose Pebble store
// has no format marker yet, copies every bucket, writes the outbox
// sequence, and writes the marker last, in a synced batch. A crash before
// that leaves a store without a marker, and the next Open starts the copy
// again from an emptied store. Only then is the old file renamed to
// LegacyFileName + ".migrated", kept for the operator to remove.

// LegacyFileName is the bbolt file of stored format 1, in the directory
// passed to Open.
const LegacyFileName = "sagaflow.db"

// legacyFormat is the stored format Open migrates.
const legacyFormat = "1"

// Keys of the info bucket.
var (
	// formatKey holds the stored format (FormatVersion).
	formatKey = []byte("format")
	// outboxSeqKey holds the last outbox sequence number written (8 bytes,
	// big-endian), so that outbox keys stay unique across restarts.
	outboxSeqKey = []byte("outbox_seq")
)

// legacyBuckets maps format 1's bucket names to format 2's prefixes.
var legacyBuckets = []struct {
	name   string
	prefix byte
}{
	{"commits", prefixCommits}, {"heads", prefixHeads}, {"handled", prefixHandled},
	{"outbox", prefixOutbox}, {"outbox_index", prefixOutboxIndex},
	{"timers", prefixTimers}, {"timer_index", prefixTimerIndex},
	{"snapshots", prefixSnapshots}, {"subject_keys", prefixSubjectKeys},
}

// migrateBatchBytes is how much one migration batch carries before it is
// committed (without sync; the marker's batch syncs them all).
const migrateBatchBytes = 4 << 20

// initFormat checks the store's format marker, writes it into a new store,
// and migrates a format-1 file found beside it.
func (s *Store) initFormat(ctx context.Context) error {
	b := bucketsOf(s.db, nil)
	v, err := b.info.Get(formatKey)
	if err != nil {
		return fmt.Errorf("read format: %w", err)
	}
	legacy := filepath.Join(s.dir, LegacyFileName)
	_, statErr := os.Stat(legacy)
	hasLegacy := statErr == nil
	switch {
	case v != nil && !bytes.Equal(v, []byte(FormatVersion)):
		return fmt.Errorf("%w: the store is of stored format %q, this release reads format %q", store.ErrUnsupportedFormat, v, FormatVersion)
	case v != nil && hasLegacy:
		// Migrated, but the rename of the old file did not happen.
		if err := s.retireLegacy(legacy); err != nil {
			return err
		}
	case v != nil:
	case hasLegacy:
		if err := s.migrate(ctx, legacy); err != nil {
			return fmt.Errorf("migrate %s: %w", legacy, err)
		}
		if err := s.retireLegacy(legacy); err != nil {
			return err
		}
	default:
		empty, err := s.isEmpty()
		if err != nil {
			return err
		}
		if !empty {
			return fmt.Errorf("%w: the store has data but no format marker", store.ErrUnsupportedFormat)
		}
		wb := s.db.NewBatch()
		defer wb.Close()
		if err := bucketsOf(nil, wb).info.Put(formatKey, []byte(FormatVersion)); err != nil {
			return err
		}
		if err := wb.Commit(s.writeOpts); err != nil {
			return fmt.Errorf("write format: %w", err)
		}
	}
	seq, err := b.info.Get(outboxSeqKey)
	if err != nil {
		return fmt.Errorf("read outbox sequence: %w", err)
	}
	if len(seq) == 8 {
		s.outboxSeq = binary.BigEndian.Uint64(seq)
	}
	return nil
}

// isEmpty reports whether the database holds no key at all.
func (s *Store) isEmpty() (bool, error) {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return false, fmt.Errorf("open iterator: %w", err)
	}
	empty := !it.First()
	if err := it.Close(); err != nil {
		return false, fmt.Errorf("iterate: %w", err)
	}
	return empty, nil
}

// migrate copies the format-1 bbolt file at legacy into the (emptied)
// database and writes the format marker last.
func (s *Store) migrate(ctx context.Context, legacy string) error {
	start := time.Now()
	old, err := bolt.Open(legacy, 0o600, &bolt.Options{ReadOnly: true, Timeout: s.cfg.lockTimeout})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer old.Close()
	var keys int
	var seq uint64
	err = old.View(func(tx *bolt.Tx) error {
		info := tx.Bucket([]byte("info"))
		if info == nil {
			return errors.New("the file has no info bucket: it is not a sagaflow store")
		}
		if v := info.Get(formatKey); !bytes.Equal(v, []byte(legacyFormat)) {
			return fmt.Errorf("%w: the file is of stored format %q, this release reads format %q and migrates format %q",
				store.ErrUnsupportedFormat, v, FormatVersion, legacyFormat)
		}
		if err := s.db.DeleteRange([]byte{0}, []byte{0xff}, pebble.Sync); err != nil {
			return fmt.Errorf("empty the store of a copy that did not finish: %w", err)
		}
		wb := s.db.NewBatch()
		defer func() { wb.Close() }()
		for _, lb := range legacyBuckets {
			src := tx.Bucket([]byte(lb.name))
			if src == nil {
				continue // subject_keys is made on the first key
			}
			if lb.prefix == prefixOutbox {
				seq = src.Sequence()
			}
			dst := bucket{prefix: lb.prefix, w: wb}
			if err := src.ForEach(func(k, v []byte) error {
				if err := dst.Put(k, v); err != nil {
					return fmt.Errorf("copy %s key %x: %w", lb.name, k, err)
				}
				keys++
				if wb.Len() < migrateBatchBytes {
					return nil
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				if err := wb.Commit(pebble.NoSync); err != nil {
					return fmt.Errorf("copy %s: %w", lb.name, err)
				}
				wb.Close()
				wb = s.db.NewBatch()
				dst.w = wb
				return nil
			}); err != nil {
				return err
			}
		}
		info2 := bucketsOf(nil, wb).info
		if err := info2.Put(outboxSeqKey, binary.BigEndian.AppendUint64(nil, seq)); err != nil {
			return err
		}
		if err := info2.Put(formatKey, []byte(FormatVersion)); err != nil {
			return err
		}
		if err := wb.Commit(s.writeOpts); err != nil {
			return fmt.Errorf("write format: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.log.Info("migrated the embedded store", "from_format", legacyFormat, "to_format", FormatVersion,
		"file", legacy, "keys", keys, "took", time.Since(start))
	return nil
}

// retireLegacy renames the migrated format-1 file out of Open's way.
func (s *Store) retireLegacy(legacy string) error {
	if err := os.Rename(legacy, legacy+".migrated"); err != nil {
		return fmt.Errorf("rename the migrated file: %w", err)
	}
	return nil
}
