package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sagaflow/sagaflow/readmodel"
)

var _ readmodel.Store = (*Store)(nil)

var (
	bucketDocs  = []byte("docs")
	bucketCPs   = []byte("checkpoints")
	bucketLog   = []byte("log")
	bucketHeads = []byte("heads")
	allBuckets  = [][]byte{bucketDocs, bucketCPs, bucketLog, bucketHeads}
)

// Option configures Open.
type Option func(*Store)

// WithLogSize sets how many change-log entries each model keeps (default
// readmodel.DefaultLogSize).
func WithLogSize(n int) Option {
	return func(s *Store) {
		if n > 0 {
			s.logSize = uint64(n)
		}
	}
}

// WithClock sets the clock that stamps changes (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// Store is the bbolt read-model store. Make one with Open.
type Store struct {
	db      *bolt.DB
	logSize uint64
	now     func() time.Time
	closed  atomic.Bool
}

// Open opens (creating) the read-model file at path.
func Open(path string, opts ...Option) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open read models %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open read models %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open read models %s: create buckets: %w", path, err)
	}
	s := &Store{db: db, logSize: readmodel.DefaultLogSize, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

func join(a, b string) []byte { return append(append([]byte(a), 0), b...) }

func posKey(model string, pos uint64) []byte {
	k := append([]byte(model), 0)
	return binary.BigEndian.AppendUint64(k, pos)
}

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func (s *Store) check() error {
	if s.closed.Load() {
		return readmodel.ErrClosed
	}
	return nil
}

func getDoc(tx *bolt.Tx, model, key string) (readmodel.Doc, bool, error) {
	v := tx.Bucket(bucketDocs).Get(join(model, key))
	if v == nil {
		return readmodel.Doc{}, false, nil
	}
	var d readmodel.Doc
	if err := json.Unmarshal(v, &d); err != nil {
		return readmodel.Doc{}, false, fmt.Errorf("read model %s key %s: decode: %w", model, key, err)
	}
	return d, true, nil
}

// Update implements readmodel.Store.
func (s *Store) Update(ctx context.Context, model, stream string, seq uint64, fn func(context.Context, readmodel.Tx) error) (readmodel.Result, error) {
	if err := s.check(); err != nil {
		return readmodel.Result{}, err
	}
	if err := readmodel.CheckUpdate(model, stream, seq); err != nil {
		return readmodel.Result{}, err
	}
	var res readmodel.Result
	err := s.db.Update(func(tx *bolt.Tx) error {
		cps := tx.Bucket(bucketCPs)
		cp := u64(cps.Get(join(model, stream)))
		if seq <= cp {
			return nil
		}
		if seq > cp+1 {
			return fmt.Errorf("read model %s: stream %s event %d: %w (checkpoint %d)", model, stream, seq, readmodel.ErrOutOfOrder, cp)
		}
		p := readmodel.NewPending(func(_ context.Context, key string) (readmodel.Doc, bool, error) {
			return getDoc(tx, model, key)
		})
		if err := fn(ctx, p); err != nil {
			return err
		}
		heads := tx.Bucket(bucketHeads)
		head := u64(heads.Get([]byte(model)))
		changes, docs, err := p.Plan(ctx, model, stream, seq, head, s.now().UTC())
		if err != nil {
			return err
		}
		docsB, logB := tx.Bucket(bucketDocs), tx.Bucket(bucketLog)
		for _, c := range changes {
			if c.Deleted {
				if err := docsB.Delete(join(model, c.Key)); err != nil {
					return err
				}
			}
			b, err := json.Marshal(c)
			if err != nil {
				return err
			}
			if err := logB.Put(posKey(model, c.Position), b); err != nil {
				return err
			}
		}
		for _, d := range docs {
			b, err := json.Marshal(d)
			if err != nil {
				return err
			}
			if err := docsB.Put(join(model, d.Key), b); err != nil {
				return err
			}
		}
		if n := len(changes); n > 0 {
			last := changes[n-1].Position
			if err := heads.Put([]byte(model), binary.BigEndian.AppendUint64(nil, last)); err != nil {
				return err
			}
			if err := s.trim(logB, model, last); err != nil {
				return err
			}
		}
		if err := cps.Put(join(model, stream), binary.BigEndian.AppendUint64(nil, seq)); err != nil {
			return err
		}
		res = readmodel.Result{Applied: true, Changes: changes}
		return nil
	})
	if err != nil {
		return readmodel.Result{}, fmt.Errorf("read model %s: update from %s event %d: %w", model, stream, seq, err)
	}
	return res, nil
}

// trim deletes the change-log entries of model at or below last-logSize.
func (s *Store) trim(logB *bolt.Bucket, model string, last uint64) error {
	if last <= s.logSize {
		return nil
	}
	cut := last - s.logSize
	prefix := append([]byte(model), 0)
	c := logB.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, _ = c.Seek(prefix) {
		if u64(k[len(prefix):]) > cut {
			return nil
		}
		if err := logB.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Get implements readmodel.Store.
func (s *Store) Get(_ context.Context, model, key string) (readmodel.Doc, error) {
	if err := s.check(); err != nil {
		return readmodel.Doc{}, err
	}
	if err := readmodel.ValidName("model", model); err != nil {
		return readmodel.Doc{}, err
	}
	if err := readmodel.ValidName("key", key); err != nil {
		return readmodel.Doc{}, err
	}
	var d readmodel.Doc
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		d, ok, err = getDoc(tx, model, key)
		return err
	})
	if err != nil {
		return readmodel.Doc{}, err
	}
	if !ok {
		return readmodel.Doc{}, fmt.Errorf("read model %s key %s: %w", model, key, readmodel.ErrNotFound)
	}
	return d, nil
}

// List implements readmodel.Store.
func (s *Store) List(_ context.Context, model, after string, limit int) ([]readmodel.Doc, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := readmodel.ValidName("model", model); err != nil {
		return nil, err
	}
	limit = readmodel.ClampLimit(limit)
	prefix := append([]byte(model), 0)
	var out []readmodel.Doc
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDocs).Cursor()
		k, v := c.Seek(join(model, after))
		for ; k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, v = c.Next() {
			if string(k[len(prefix):]) <= after {
				continue
			}
			var d readmodel.Doc
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("read model %s: decode %q: %w", model, k[len(prefix):], err)
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// Checkpoint implements readmodel.Store.
func (s *Store) Checkpoint(_ context.Context, model, stream string) (uint64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	var cp uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		cp = u64(tx.Bucket(bucketCPs).Get(join(model, stream)))
		return nil
	})
	return cp, err
}

// Changes implements readmodel.Store.
func (s *Store) Changes(_ context.Context, model string, after uint64, limit int) ([]readmodel.Change, uint64, error) {
	if err := s.check(); err != nil {
		return nil, 0, err
	}
	if err := readmodel.ValidName("model", model); err != nil {
		return nil, 0, err
	}
	limit = readmodel.ClampLimit(limit)
	prefix := append([]byte(model), 0)
	var out []readmodel.Change
	var oldest uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLog).Cursor()
		if k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8 {
			oldest = u64(k[len(prefix):])
		}
		for k, v := c.Seek(posKey(model, after+1)); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8 && len(out) < limit; k, v = c.Next() {
			var ch readmodel.Change
			if err := json.Unmarshal(v, &ch); err != nil {
				return fmt.Errorf("read model %s: decode change %d: %w", model, u64(k[len(prefix):]), err)
			}
			out = append(out, ch)
		}
		return nil
	})
	return out, oldest, err
}

// Head implements readmodel.Store.
func (s *Store) Head(_ context.Context, model string) (uint64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	var head uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		head = u64(tx.Bucket(bucketHeads).Get([]byte(model)))
		return nil
	})
	return head, err
}

// Drop implements readmodel.Store.
func (s *Store) Drop(_ context.Context, model string) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := readmodel.ValidName("model", model); err != nil {
		return err
	}
	prefix := append([]byte(model), 0)
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketDocs, bucketCPs, bucketLog} {
			b := tx.Bucket(name)
			c := b.Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read model %s: drop: %w", model, err)
	}
	return nil
}

// Close implements readmodel.Store.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	return s.db.Close()
}
