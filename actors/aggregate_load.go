package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

// Sealer protects the personal fields of payloads at rest (crypto-
// shredding; package shred implements it). Payloads are sealed before an
// aggregate's commit is written and opened whenever stored payloads are
// decoded.
type Sealer interface {
	// Seal encrypts the personal fields of e's payload under their
	// subject's key, noting in e's headers what it sealed; subject is the
	// subject to use when the payload names none (the aggregate ID).
	Seal(ctx context.Context, e *message.Envelope, subject string) error
	// Open returns e's payload with its sealed fields decrypted, or
	// redacted when their subject was forgotten; subject names the subject
	// whose data the payload now holds in the clear ("" when none).
	Open(ctx context.Context, e message.Envelope) (payload []byte, subject string, err error)
	// SealedFor returns the subject e was sealed for ("" when none).
	SealedFor(e message.Envelope) string
	// SealState encrypts a snapshot's state under the keys of subjects
	// (sorted, distinct), so that forgetting any of them makes it
	// unreadable.
	SealState(ctx context.Context, subjects []string, state []byte) ([]byte, error)
	// OpenState decrypts a state sealed by SealState; it fails when a
	// subject was forgotten since.
	OpenState(ctx context.Context, subjects []string, sealed []byte) ([]byte, error)
}

// NoteForgotten tells the aggregate actors of this process that a
// subject was forgotten: each reloads its state from the store (where the
// subject's personal fields now read as redacted) before its next command.
func (d *Deps) NoteForgotten() { d.forgetEpoch.Add(1) }

// forgotten reports whether a subject was forgotten since a loaded.
func (a *aggregateEntity) forgotten() bool { return a.epoch != a.deps.forgetEpoch.Load() }

// seal seals the payloads of c's events and outgoing messages.
func (d *Deps) seal(ctx context.Context, subject string, c *store.Commit) error {
	if d.Sealer == nil {
		return nil
	}
	for _, list := range [][]message.Envelope{c.Events, c.Outbox} {
		for i := range list {
			if err := d.Sealer.Seal(ctx, &list[i], subject); err != nil {
				return fmt.Errorf("seal %s of %s v%d: %w", list[i].Type, c.Stream, c.Version, err)
			}
		}
	}
	return nil
}

// decode opens e's payload (when a Sealer is set) and decodes it by its
// type, upcasting an older schema version (see message.Upcast).
func (d *Deps) decode(ctx context.Context, e message.Envelope) (any, error) {
	v, _, err := d.decodeSealed(ctx, e)
	return v, err
}

// decodeSealed is decode that also returns the subject whose personal
// data the decoded value holds ("" when none).
func (d *Deps) decodeSealed(ctx context.Context, e message.Envelope) (v any, subject string, err error) {
	if d.Sealer != nil {
		if e.Payload, subject, err = d.Sealer.Open(ctx, e); err != nil {
			return nil, "", fmt.Errorf("message %q: %w", e.ID, err)
		}
	}
	v, err = d.Registry.DecodeEnvelope(e)
	return v, subject, err
}

// AggregatePoint names a point in an aggregate's history. The zero value
// is the latest state.
type AggregatePoint struct {
	// Version, when not 0, is the last commit version to include.
	Version uint64
	// At, when not zero, includes the commits made at or before it.
	At time.Time
}

// LoadedAggregate is an aggregate's state at some commit.
type LoadedAggregate struct {
	// State is the aggregate's state.
	State any
	// Version is the last commit included (0: none).
	Version uint64
	// Seq is the sequence number of the last event included.
	Seq uint64
	// At is when commit Version was made (zero when Version is 0).
	At time.Time
	// SnapshotVersion is the version of the snapshot the load started
	// from (0: it replayed the stream from the start).
	SnapshotVersion uint64
	// EventsRead counts the events the load decoded and applied.
	EventsRead int
	// Subjects are the data subjects whose personal data State holds
	// (see package shred); a snapshot of State is sealed under them. Nil
	// when there are none (an idle actor keeps it: no map per actor).
	Subjects map[string]struct{}
}

// addSubject records that l's state holds personal data of subject.
func (l *LoadedAggregate) addSubject(subject string) {
	if l.Subjects == nil {
		l.Subjects = map[string]struct{}{}
	}
	l.Subjects[subject] = struct{}{}
}

// LoadAggregate folds the stream of aggregate id into its state and
// returns it with the stream's commit version and event sequence. It
// starts from the latest snapshot when the type takes snapshots.
func LoadAggregate(ctx context.Context, deps *Deps, t aggregate.Type, id string) (state any, version, seq uint64, err error) {
	l, err := LoadAggregateAt(ctx, deps, t, id, AggregatePoint{})
	return l.State, l.Version, l.Seq, err
}

// LoadAggregateAt folds the stream of aggregate id up to point p: the
// latest snapshot at or before p (if any and if it fits the state type),
// then the commits after it up to p.
func LoadAggregateAt(ctx context.Context, deps *Deps, t aggregate.Type, id string, p AggregatePoint) (LoadedAggregate, error) {
	stream := AggregateStream(t.Name(), id)
	l := LoadedAggregate{State: t.Initial(id)}
	if snap, ok := deps.loadSnapshot(ctx, t, stream, p); ok {
		l.State, l.Version, l.Seq, l.At, l.SnapshotVersion = snap.state, snap.Version, snap.Seq, snap.CommitAt, snap.Version
		for _, s := range snap.Subjects {
			l.addSubject(s)
		}
	}
	commits, err := deps.Store.Load(ctx, stream, l.Version+1)
	if err != nil {
		return LoadedAggregate{}, fmt.Errorf("load %s: %w", stream, err)
	}
	for _, c := range commits {
		if (p.Version != 0 && c.Version > p.Version) || (!p.At.IsZero() && c.At.After(p.At)) {
			break
		}
		for _, e := range c.Events {
			ev, subject, err := deps.decodeSealed(ctx, e)
			if subject != "" {
				l.addSubject(subject)
			}
			if err != nil {
				return LoadedAggregate{}, fmt.Errorf("load %s v%d: %w", stream, c.Version, err)
			}
			if l.State, err = t.Apply(l.State, ev); err != nil {
				return LoadedAggregate{}, fmt.Errorf("load %s v%d: %w", stream, c.Version, err)
			}
			l.Seq = e.Sequence
			l.EventsRead++
		}
		l.Version, l.At = c.Version, c.At
	}
	return l, nil
}

// aggregateSnapshot is what store.Snapshot.State holds for an aggregate.
type aggregateSnapshot struct {
	// Schema is the state's aggregate.Snapshotting.StateSchema.
	Schema string `json:"schema"`
	// Version and Seq are the commit version and event sequence the state
	// includes; CommitAt is when commit Version was made.
	Version  uint64    `json:"version"`
	Seq      uint64    `json:"seq"`
	CommitAt time.Time `json:"commit_at"`
	// State is the encoded state, or, when the state holds personal data,
	// empty: SealedState is then the state sealed under Subjects' keys.
	State       json.RawMessage `json:"state,omitempty"`
	Subjects    []string        `json:"subjects,omitempty"`
	SealedState []byte          `json:"sealed_state,omitempty"`

	state any // decoded State
}

// fits reports whether the snapshot is at or before p.
func (s aggregateSnapshot) fits(p AggregatePoint) bool {
	return (p.Version == 0 || s.Version <= p.Version) && (p.At.IsZero() || !s.CommitAt.After(p.At))
}

// snapshotting returns t's snapshot settings when it takes snapshots.
func (d *Deps) snapshotting(t aggregate.Type) (aggregate.Snapshotting, bool) {
	s, ok := t.(aggregate.Snapshotting)
	if !ok || s.SnapshotInterval() < 1 {
		return nil, false
	}
	return s, true
}

// maxSnapshotSubjects bounds the data subjects whose personal data a
// snapshot may hold: a state folded from the data of more subjects is
// not snapshotted (opening it would read that many keys).
const maxSnapshotSubjects = 100

// loadSnapshot returns the stream's snapshot when there is one that fits
// t's state. A snapshot that cannot be read or was taken of another shape
// of the state is logged and not used: the caller replays the stream, so
// a changed state type costs time, never a wrong state.
// A snapshot after point p is not used either, nor one sealed under a
// subject forgotten since (the replay then reads its fields redacted).
func (d *Deps) loadSnapshot(ctx context.Context, t aggregate.Type, stream string, p AggregatePoint) (aggregateSnapshot, bool) {
	s, ok := d.snapshotting(t)
	if !ok {
		return aggregateSnapshot{}, false
	}
	raw, found, err := d.Store.LoadSnapshot(ctx, stream)
	if err != nil {
		d.Logger.Warn("snapshot unreadable; replaying the stream", "stream", stream, "err", err)
		return aggregateSnapshot{}, false
	}
	if !found {
		return aggregateSnapshot{}, false
	}
	var snap aggregateSnapshot
	if err := json.Unmarshal(raw.State, &snap); err != nil {
		d.Logger.Warn("snapshot undecodable; replaying the stream", "stream", stream, "version", raw.Version, "err", err)
		return aggregateSnapshot{}, false
	}
	if want := s.StateSchema(); snap.Schema != want {
		d.Logger.Info("snapshot taken of another state shape; replaying the stream", "stream", stream,
			"version", raw.Version, "snapshot_schema", snap.Schema, "state_schema", want)
		return aggregateSnapshot{}, false
	}
	if snap.Version != raw.Version || snap.Version == 0 {
		d.Logger.Warn("snapshot inconsistent; replaying the stream", "stream", stream, "version", raw.Version, "state_version", snap.Version)
		return aggregateSnapshot{}, false
	}
	if !snap.fits(p) {
		return aggregateSnapshot{}, false
	}
	state := []byte(snap.State)
	if len(snap.Subjects) > 0 {
		if d.Sealer == nil {
			d.Logger.Warn("snapshot sealed but no sealer set; replaying the stream", "stream", stream, "version", raw.Version)
			return aggregateSnapshot{}, false
		}
		if state, err = d.Sealer.OpenState(ctx, snap.Subjects, snap.SealedState); err != nil {
			d.Logger.Info("sealed snapshot does not open; replaying the stream", "stream", stream, "version", raw.Version, "err", err)
			return aggregateSnapshot{}, false
		}
	}
	if snap.state, err = s.DecodeState(state); err != nil {
		d.Logger.Info("snapshot does not fit the state type; replaying the stream", "stream", stream, "version", raw.Version, "err", err)
		return aggregateSnapshot{}, false
	}
	return snap, true
}

// snapshotAfterCommit saves a snapshot when the commit just made took the
// event count across a multiple of the type's interval. Snapshots are
// derived data: a failure is logged and only makes later loads longer.
func (a *aggregateEntity) snapshotAfterCommit(ctx context.Context, prevSeq uint64, c store.Commit) {
	s, ok := a.deps.snapshotting(a.typ)
	if !ok {
		return
	}
	if a.deps.Sealer != nil {
		for _, e := range c.Events {
			if subject := a.deps.Sealer.SealedFor(e); subject != "" {
				if a.subjects == nil {
					a.subjects = map[string]struct{}{}
				}
				a.subjects[subject] = struct{}{}
			}
		}
	}
	n := uint64(s.SnapshotInterval())
	if a.seq/n == prevSeq/n {
		return
	}
	if len(a.subjects) > maxSnapshotSubjects {
		a.deps.Logger.Debug("no snapshot: the state holds personal data of too many subjects", "stream", a.stream(), "subjects", len(a.subjects))
		return
	}
	if err := a.saveSnapshot(ctx, s); err != nil {
		a.deps.Logger.Warn("snapshot not saved; loads replay further", "stream", a.stream(), "version", a.version, "err", err)
	}
}

func (a *aggregateEntity) saveSnapshot(ctx context.Context, s aggregate.Snapshotting) error {
	state, err := s.EncodeState(a.state)
	if err != nil {
		return err
	}
	// The commit time as the store keeps it (MongoDB keeps milliseconds),
	// so that a load from the snapshot reports the time a replay would.
	commits, err := a.deps.Store.Load(ctx, a.stream(), a.version)
	if err != nil {
		return err
	}
	if len(commits) == 0 || commits[0].Version != a.version {
		return fmt.Errorf("commit v%d not found after it was made", a.version)
	}
	commitAt := commits[0].At
	snap := aggregateSnapshot{Schema: s.StateSchema(), Version: a.version, Seq: a.seq, CommitAt: commitAt, State: state}
	if len(a.subjects) > 0 {
		if a.deps.Sealer == nil {
			return errors.New("the state holds personal data and no sealer is set")
		}
		snap.Subjects = slices.Sorted(maps.Keys(a.subjects))
		if snap.SealedState, err = a.deps.Sealer.SealState(ctx, snap.Subjects, state); err != nil {
			return err
		}
		snap.State = nil
	}
	data, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	err = a.deps.Store.SaveSnapshot(ctx, store.Snapshot{Stream: a.stream(), Version: a.version, State: data, At: a.deps.now()})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
