package mongo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/sagaflow/sagaflow/readmodel"
)

var _ readmodel.Store = (*Store)(nil)

// DefaultDatabase is used when neither WithDatabase nor the URI names one.
const DefaultDatabase = "sagaflow"

// maxAttempts bounds an Update's tries when another process wrote the
// same position.
const maxAttempts = 8

// Option configures Open.
type Option func(*config)

type config struct {
	database string
	logSize  uint64
	now      func() time.Time
}

// WithDatabase names the database (default: the URI's, else "sagaflow").
func WithDatabase(name string) Option { return func(c *config) { c.database = name } }

// WithLogSize sets how many change-log entries each model keeps (default
// readmodel.DefaultLogSize).
func WithLogSize(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.logSize = uint64(n)
		}
	}
}

// WithClock sets the clock that stamps changes (default time.Now).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// Store is the MongoDB read-model store. Make one with Open.
type Store struct {
	client                        *mongo.Client
	cfg                           config
	docs, cps, log, events, heads *mongo.Collection
	closed                        atomic.Bool
	mu                            sync.Mutex
	models                        map[string]*modelState
}

// modelState is this process's view of one model, guarded by its lock.
type modelState struct {
	mu       sync.Mutex
	repaired bool
	head     uint64
	// cps caches the checkpoints this process read or wrote (Updates of
	// the model are serialized here); a repair or Drop clears it.
	cps map[string]uint64
}

// maxCachedCheckpoints bounds a model's checkpoint cache.
const maxCachedCheckpoints = 100_000

func (m *modelState) cache(stream string, seq uint64) {
	if m.cps == nil || len(m.cps) >= maxCachedCheckpoints {
		m.cps = make(map[string]uint64)
	}
	m.cps[stream] = seq
}

// Open connects to uri and returns the store.
func Open(ctx context.Context, uri string, opts ...Option) (*Store, error) {
	cfg := config{logSize: readmodel.DefaultLogSize, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	cs, err := connstring.ParseAndValidate(uri)
	if err != nil {
		return nil, fmt.Errorf("open mongo read models: parse URI: %w", err)
	}
	if cfg.database == "" {
		cfg.database = cs.Database
	}
	if cfg.database == "" {
		cfg.database = DefaultDatabase
	}
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(10 * time.Second))
	if err != nil {
		return nil, fmt.Errorf("open mongo read models: %w", err)
	}
	if err := client.Ping(ctx, nil); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, fmt.Errorf("open mongo read models: ping: %w", err)
	}
	db := client.Database(cfg.database, options.Database().SetWriteConcern(writeconcern.Majority()))
	return &Store{
		client: client, cfg: cfg,
		docs: db.Collection("rm_docs"), cps: db.Collection("rm_checkpoints"), log: db.Collection("rm_log"),
		events: db.Collection("rm_events"), heads: db.Collection("rm_heads"),
		models: make(map[string]*modelState),
	}, nil
}

func docID(model, key string) string { return model + "|" + key }
func posID(model string, pos uint64) string {
	return fmt.Sprintf("%s|%020d", model, pos)
}

// docRecord is a document as stored; the body is kept as the JSON text
// it was written with.
type docRecord struct {
	ID        string    `bson:"_id"`
	Model     string    `bson:"model"`
	Key       string    `bson:"key"`
	Body      string    `bson:"body"`
	Version   int64     `bson:"version"`
	Position  int64     `bson:"position"`
	Stream    string    `bson:"stream"`
	Seq       int64     `bson:"seq"`
	UpdatedAt time.Time `bson:"updated_at"`
}

func (r docRecord) doc() readmodel.Doc {
	return readmodel.Doc{Model: r.Model, Key: r.Key, Body: []byte(r.Body), Version: uint64(r.Version),
		Position: uint64(r.Position), Stream: r.Stream, Seq: uint64(r.Seq), UpdatedAt: r.UpdatedAt.UTC()}
}

func record(d readmodel.Doc) docRecord {
	return docRecord{ID: docID(d.Model, d.Key), Model: d.Model, Key: d.Key, Body: string(d.Body), Version: int64(d.Version),
		Position: int64(d.Position), Stream: d.Stream, Seq: int64(d.Seq), UpdatedAt: d.UpdatedAt}
}

type changeRecord struct {
	ID       string    `bson:"_id"`
	Model    string    `bson:"model"`
	Position int64     `bson:"position"`
	Key      string    `bson:"key"`
	Deleted  bool      `bson:"deleted"`
	Body     string    `bson:"body"`
	Version  int64     `bson:"version"`
	Stream   string    `bson:"stream"`
	Seq      int64     `bson:"seq"`
	At       time.Time `bson:"at"`
}

func changeRec(c readmodel.Change) changeRecord {
	return changeRecord{ID: posID(c.Model, c.Position), Model: c.Model, Position: int64(c.Position), Key: c.Key, Deleted: c.Deleted,
		Body: string(c.Body), Version: int64(c.Version), Stream: c.Stream, Seq: int64(c.Seq), At: c.At}
}

func (r changeRecord) change() readmodel.Change {
	c := readmodel.Change{Position: uint64(r.Position), Model: r.Model, Key: r.Key, Deleted: r.Deleted, Version: uint64(r.Version),
		Stream: r.Stream, Seq: uint64(r.Seq), At: r.At.UTC()}
	if !r.Deleted {
		c.Body = []byte(r.Body)
	}
	return c
}

// intentRecord is the one document an Update that changes documents
// inserts; everything else is derived from it.
type intentRecord struct {
	ID      string         `bson:"_id"`
	Model   string         `bson:"model"`
	Stream  string         `bson:"stream"`
	Seq     int64          `bson:"seq"`
	Changes []changeRecord `bson:"changes"`
}

func (s *Store) state(model string) *modelState {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.models[model]
	if m == nil {
		m = &modelState{}
		s.models[model] = m
	}
	return m
}

func (s *Store) check() error {
	if s.closed.Load() {
		return readmodel.ErrClosed
	}
	return nil
}

// headDoc is a model's rm_heads document: the last position written and
// the position the model was last dropped at.
type headDoc struct {
	Pos   int64 `bson:"pos"`
	Floor int64 `bson:"floor"`
}

func (s *Store) readHeadDoc(ctx context.Context, model string) (headDoc, error) {
	var h headDoc
	err := s.heads.FindOne(ctx, bson.D{{Key: "_id", Value: model}}).Decode(&h)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return headDoc{}, nil
	}
	if err != nil {
		return headDoc{}, fmt.Errorf("read model %s: read head: %w", model, err)
	}
	return h, nil
}

// readHead returns the model's stored head position.
func (s *Store) readHead(ctx context.Context, model string) (uint64, error) {
	h, err := s.readHeadDoc(ctx, model)
	return uint64(h.Pos), err
}

// repair brings m up to date with the stored intents: it re-applies, in
// order, every intent after the stored head. m's lock is held.
func (s *Store) repair(ctx context.Context, model string, m *modelState) error {
	head, err := s.readHead(ctx, model)
	if err != nil {
		return err
	}
	head = max(head, m.head)
	for range 1_000_000 {
		var in intentRecord
		err := s.events.FindOne(ctx, bson.D{{Key: "_id", Value: posID(model, head+1)}}).Decode(&in)
		if errors.Is(err, mongo.ErrNoDocuments) {
			break
		}
		if err != nil {
			return fmt.Errorf("read model %s: read intent %d: %w", model, head+1, err)
		}
		if err := s.derive(ctx, in, false); err != nil {
			return err
		}
		head = uint64(in.Changes[len(in.Changes)-1].Position)
	}
	if err := s.writeHead(ctx, model, head); err != nil {
		return err
	}
	m.head, m.repaired, m.cps = head, true, nil
	return nil
}

// headEvery is how many positions the stored head may lag behind the
// intents: less than half the change-log window, so that a repair that
// starts at the stored head never starts below a trimmed position.
func (s *Store) headEvery() uint64 { return max(1, min(64, s.cfg.logSize/2)) }

func (s *Store) writeHead(ctx context.Context, model string, pos uint64) error {
	if _, err := s.heads.UpdateOne(ctx, bson.D{{Key: "_id", Value: model}},
		bson.D{{Key: "$max", Value: bson.D{{Key: "pos", Value: int64(pos)}}}}, options.UpdateOne().SetUpsert(true)); err != nil {
		return fmt.Errorf("read model %s: write head: %w", model, err)
	}
	return nil
}

// derive writes the documents an intent stands for. Every write is
// idempotent, so a repair may repeat it. The stored head is written
// every headEvery positions (and by repair): readers find newer entries
// by looking past it.
func (s *Store) derive(ctx context.Context, in intentRecord, head bool) error {
	model := in.Model
	var logDocs []any
	for _, c := range in.Changes {
		logDocs = append(logDocs, c)
		if c.Deleted {
			if _, err := s.docs.DeleteOne(ctx, bson.D{{Key: "_id", Value: docID(model, c.Key)}}); err != nil {
				return fmt.Errorf("read model %s: delete %s: %w", model, c.Key, err)
			}
			continue
		}
		rec := docRecord{ID: docID(model, c.Key), Model: model, Key: c.Key, Body: c.Body, Version: c.Version,
			Position: c.Position, Stream: c.Stream, Seq: c.Seq, UpdatedAt: c.At}
		if _, err := s.docs.ReplaceOne(ctx, bson.D{{Key: "_id", Value: rec.ID}}, rec, options.Replace().SetUpsert(true)); err != nil {
			return fmt.Errorf("read model %s: write %s: %w", model, c.Key, err)
		}
	}
	if _, err := s.log.InsertMany(ctx, logDocs, options.InsertMany().SetOrdered(false)); err != nil && !onlyDuplicates(err) {
		return fmt.Errorf("read model %s: write change log: %w", model, err)
	}
	if err := s.setCheckpoint(ctx, model, in.Stream, uint64(in.Seq)); err != nil {
		return err
	}
	first, last := uint64(in.Changes[0].Position), uint64(in.Changes[len(in.Changes)-1].Position)
	if k := s.headEvery(); head && last/k > (first-1)/k {
		if err := s.writeHead(ctx, model, last); err != nil {
			return err
		}
	}
	return s.trim(ctx, model, uint64(in.Changes[0].Position), last)
}

// trim deletes the change-log entries (and intents) that fell out of the
// window when positions first..last were written.
func (s *Store) trim(ctx context.Context, model string, first, last uint64) error {
	if last <= s.cfg.logSize {
		return nil
	}
	var ids []string
	for p := max(first, s.cfg.logSize+1); p <= last; p++ {
		ids = append(ids, posID(model, p-s.cfg.logSize))
	}
	// One _id equality delete each (FerretDB scans for $in).
	for _, id := range ids {
		filter := bson.D{{Key: "_id", Value: id}}
		if _, err := s.log.DeleteOne(ctx, filter); err != nil {
			return fmt.Errorf("read model %s: trim change log: %w", model, err)
		}
		if _, err := s.events.DeleteOne(ctx, filter); err != nil {
			return fmt.Errorf("read model %s: trim intents: %w", model, err)
		}
	}
	return nil
}

func (s *Store) setCheckpoint(ctx context.Context, model, stream string, seq uint64) error {
	_, err := s.cps.UpdateOne(ctx, bson.D{{Key: "_id", Value: docID(model, stream)}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "model", Value: model}}}, {Key: "$max", Value: bson.D{{Key: "seq", Value: int64(seq)}}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("read model %s: write checkpoint of %s: %w", model, stream, err)
	}
	return nil
}

func onlyDuplicates(err error) bool {
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && bwe.WriteConcernError == nil && len(bwe.WriteErrors) > 0 {
		for _, we := range bwe.WriteErrors {
			if we.Code != 11000 {
				return false
			}
		}
		return true
	}
	return mongo.IsDuplicateKeyError(err)
}

func (s *Store) getDoc(ctx context.Context, model, key string) (readmodel.Doc, bool, error) {
	var r docRecord
	err := s.docs.FindOne(ctx, bson.D{{Key: "_id", Value: docID(model, key)}}).Decode(&r)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return readmodel.Doc{}, false, nil
	}
	if err != nil {
		return readmodel.Doc{}, false, fmt.Errorf("read model %s key %s: %w", model, key, err)
	}
	return r.doc(), true, nil
}

// Update implements readmodel.Store.
func (s *Store) Update(ctx context.Context, model, stream string, seq uint64, fn func(context.Context, readmodel.Tx) error) (readmodel.Result, error) {
	if err := s.check(); err != nil {
		return readmodel.Result{}, err
	}
	if err := readmodel.CheckUpdate(model, stream, seq); err != nil {
		return readmodel.Result{}, err
	}
	m := s.state(model)
	m.mu.Lock()
	defer m.mu.Unlock()
	for range maxAttempts {
		if !m.repaired {
			if err := s.repair(ctx, model, m); err != nil {
				return readmodel.Result{}, err
			}
		}
		cp, cached := m.cps[stream]
		if !cached {
			var err error
			if cp, err = s.Checkpoint(ctx, model, stream); err != nil {
				return readmodel.Result{}, err
			}
			m.cache(stream, cp)
		}
		if seq <= cp {
			return readmodel.Result{}, nil
		}
		if seq > cp+1 {
			return readmodel.Result{}, fmt.Errorf("read model %s: stream %s event %d: %w (checkpoint %d)", model, stream, seq, readmodel.ErrOutOfOrder, cp)
		}
		p := readmodel.NewPending(func(ctx context.Context, key string) (readmodel.Doc, bool, error) {
			return s.getDoc(ctx, model, key)
		})
		if err := fn(ctx, p); err != nil {
			return readmodel.Result{}, fmt.Errorf("read model %s: update from %s event %d: %w", model, stream, seq, err)
		}
		changes, _, err := p.Plan(ctx, model, stream, seq, m.head, s.cfg.now().UTC().Truncate(time.Millisecond))
		if err != nil {
			return readmodel.Result{}, err
		}
		if len(changes) == 0 {
			if err := s.setCheckpoint(ctx, model, stream, seq); err != nil {
				delete(m.cps, stream)
				return readmodel.Result{}, err
			}
			m.cache(stream, seq)
			return readmodel.Result{Applied: true}, nil
		}
		in := intentRecord{ID: posID(model, changes[0].Position), Model: model, Stream: stream, Seq: int64(seq)}
		for _, c := range changes {
			in.Changes = append(in.Changes, changeRec(c))
		}
		if _, err := s.events.InsertOne(ctx, in); err != nil {
			if mongo.IsDuplicateKeyError(err) {
				// Another process took this position: catch up, decide again.
				m.repaired = false
				continue
			}
			return readmodel.Result{}, fmt.Errorf("read model %s: write intent for %s event %d: %w", model, stream, seq, err)
		}
		m.head = changes[len(changes)-1].Position
		if err := s.derive(ctx, in, true); err != nil {
			// The intent is durable; the next repair finishes the job.
			m.repaired = false
			return readmodel.Result{Applied: true, Changes: changes}, err
		}
		m.cache(stream, seq)
		return readmodel.Result{Applied: true, Changes: changes}, nil
	}
	return readmodel.Result{}, fmt.Errorf("read model %s: %s event %d: position taken by another writer %d times", model, stream, seq, maxAttempts)
}

// Get implements readmodel.Store.
func (s *Store) Get(ctx context.Context, model, key string) (readmodel.Doc, error) {
	if err := s.check(); err != nil {
		return readmodel.Doc{}, err
	}
	if err := readmodel.ValidName("model", model); err != nil {
		return readmodel.Doc{}, err
	}
	if err := readmodel.ValidName("key", key); err != nil {
		return readmodel.Doc{}, err
	}
	d, ok, err := s.getDoc(ctx, model, key)
	if err != nil {
		return readmodel.Doc{}, err
	}
	if !ok {
		return readmodel.Doc{}, fmt.Errorf("read model %s key %s: %w", model, key, readmodel.ErrNotFound)
	}
	return d, nil
}

// List implements readmodel.Store. It filters on the model field, which
// the FerretDB dev server answers with a scan: it is for the admin API,
// not for a hot path.
func (s *Store) List(ctx context.Context, model, after string, limit int) ([]readmodel.Doc, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := readmodel.ValidName("model", model); err != nil {
		return nil, err
	}
	filter := bson.D{{Key: "model", Value: model}, {Key: "_id", Value: bson.D{{Key: "$gt", Value: docID(model, after)}}}}
	// The first batch holds the whole page, so no cursor stays open on the
	// server, and the cursor is closed with a context of its own: one left
	// open after ctx expired holds a FerretDB SQLite connection for minutes.
	n := int64(readmodel.ClampLimit(limit))
	cur, err := s.docs.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(n).SetBatchSize(int32(n)))
	if err != nil {
		return nil, fmt.Errorf("read model %s: list: %w", model, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = cur.Close(cctx)
	}()
	var recs []docRecord
	if err := cur.All(ctx, &recs); err != nil {
		return nil, fmt.Errorf("read model %s: list: %w", model, err)
	}
	out := make([]readmodel.Doc, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.doc())
	}
	return out, nil
}

// Checkpoint implements readmodel.Store.
func (s *Store) Checkpoint(ctx context.Context, model, stream string) (uint64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	var r struct {
		Seq int64 `bson:"seq"`
	}
	err := s.cps.FindOne(ctx, bson.D{{Key: "_id", Value: docID(model, stream)}}).Decode(&r)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read model %s: checkpoint of %s: %w", model, stream, err)
	}
	return uint64(r.Seq), nil
}

// Changes implements readmodel.Store: one read of the head document,
// then one _id lookup per position. The stored head may lag the log a
// little (see headEvery): entries past it are found by looking on.
func (s *Store) Changes(ctx context.Context, model string, after uint64, limit int) ([]readmodel.Change, uint64, error) {
	if err := s.check(); err != nil {
		return nil, 0, err
	}
	if err := readmodel.ValidName("model", model); err != nil {
		return nil, 0, err
	}
	h, err := s.readHeadDoc(ctx, model)
	if err != nil {
		return nil, 0, err
	}
	head, floor := uint64(h.Pos), uint64(h.Floor)
	// The log holds positions after floor, at most the last logSize.
	oldest := floor + 1
	if head > s.cfg.logSize {
		oldest = max(oldest, head-s.cfg.logSize+1)
	}
	limit = readmodel.ClampLimit(limit)
	var out []readmodel.Change
	for p, misses := max(after+1, oldest), uint64(0); len(out) < limit; p++ {
		var r changeRecord
		err := s.log.FindOne(ctx, bson.D{{Key: "_id", Value: posID(model, p)}}).Decode(&r)
		if errors.Is(err, mongo.ErrNoDocuments) {
			// Below the stored head, a missing entry was trimmed after
			// the head was stored: look on, at most a window's worth.
			if len(out) == 0 && p <= head && misses < s.cfg.logSize {
				misses++
				continue
			}
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read model %s: change %d: %w", model, p, err)
		}
		if len(out) == 0 && uint64(r.Position) > after+1 {
			oldest = max(oldest, uint64(r.Position))
		}
		out = append(out, r.change())
	}
	if len(out) == 0 && head <= floor {
		return nil, 0, nil
	}
	return out, oldest, nil
}

// Head implements readmodel.Store.
func (s *Store) Head(ctx context.Context, model string) (uint64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	head, err := s.readHead(ctx, model)
	if err != nil {
		return 0, err
	}
	m := s.state(model)
	m.mu.Lock()
	defer m.mu.Unlock()
	return max(head, m.head), nil
}

// Drop implements readmodel.Store.
func (s *Store) Drop(ctx context.Context, model string) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := readmodel.ValidName("model", model); err != nil {
		return err
	}
	m := s.state(model)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.repaired {
		if err := s.repair(ctx, model, m); err != nil {
			return err
		}
	}
	// The floor goes first: from then on the log reads as empty up to it.
	if _, err := s.heads.UpdateOne(ctx, bson.D{{Key: "_id", Value: model}},
		bson.D{{Key: "$max", Value: bson.D{{Key: "pos", Value: int64(m.head)}, {Key: "floor", Value: int64(m.head)}}}},
		options.UpdateOne().SetUpsert(true)); err != nil {
		return fmt.Errorf("read model %s: drop: write floor: %w", model, err)
	}
	m.cps = nil
	for _, c := range []*mongo.Collection{s.events, s.docs, s.log, s.cps} {
		if _, err := c.DeleteMany(ctx, bson.D{{Key: "model", Value: model}}); err != nil {
			return fmt.Errorf("read model %s: drop %s: %w", model, c.Name(), err)
		}
	}
	return nil
}

// Close implements readmodel.Store.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.client.Disconnect(ctx)
}
