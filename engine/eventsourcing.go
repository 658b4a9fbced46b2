package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sagaflow/sagaflow/actors"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/shred"
	"github.com/sagaflow/sagaflow/store"
)

// ErrAggregateNotFound: no aggregate serves the service, the aggregate has
// no commits, or it had none at the point asked for.
var ErrAggregateNotFound = errors.New("aggregate not found")

// Upcaster registers, when passed to Register, fn as the upcaster that
// turns stored or received payloads of type name (without version, such
// as "inventory.Reserved") at schema version from into version from+1
// (see message.Upcast). Register the current version with Message; an
// aggregate then reads events stored at older versions through the chain
// of upcasters.
func Upcaster(name string, from int, fn message.UpcastFunc) MessageType {
	return MessageType{name: message.TypeName(name, from), register: func(r *message.Registry) error {
		return message.Upcast(r, name, from, fn)
	}}
}

// AggregateAt names the point of a temporal query: a commit version or a
// time, not both. The zero value asks for the latest state.
type AggregateAt struct {
	// Version, when not 0, asks for the state after commit Version.
	Version uint64
	// Time, when not zero, asks for the state after the last commit made
	// at or before it.
	Time time.Time
}

// AggregateView is an aggregate's state at a point of its history, the
// body of GET /v1/aggregates/{service}/{id}.
type AggregateView struct {
	Service string `json:"service"`
	Type    string `json:"type"`
	ID      string `json:"id"`
	// Version is the commit the state includes (the last one at or before
	// the point asked for); At is when that commit was made.
	Version uint64    `json:"version"`
	At      time.Time `json:"at"`
	// Latest is the aggregate's current version.
	Latest uint64 `json:"latest"`
	// State is the aggregate's state (JSON-encoded in the admin API).
	State any `json:"state"`
}

// AggregateStateAt returns the state of aggregate id served by service
// at a version or a time (a temporal query): the stream replayed up to
// that commit, starting from a snapshot only when it lies at or before
// the point. It fails with ErrAggregateNotFound when nothing serves
// service, the aggregate has no commits, the version is beyond its latest
// or the time before its first commit, and with ErrInvalidRequest when
// both a version and a time are given.
func (e *Engine) AggregateStateAt(ctx context.Context, service, id string, at AggregateAt) (AggregateView, error) {
	if !e.running.Load() {
		return AggregateView{}, ErrNotRunning
	}
	if at.Version != 0 && !at.Time.IsZero() {
		return AggregateView{}, fmt.Errorf("%w: give a version or a time, not both", ErrInvalidRequest)
	}
	if id == "" {
		return AggregateView{}, fmt.Errorf("%w: empty aggregate ID", ErrInvalidRequest)
	}
	e.mu.RLock()
	t, ok := e.aggregates[service]
	e.mu.RUnlock()
	if !ok {
		return AggregateView{}, fmt.Errorf("%w: no aggregate serves %q", ErrAggregateNotFound, service)
	}
	stream := actors.AggregateStream(t.Name(), id)
	info, err := e.deps.Store.Info(ctx, stream)
	if errors.Is(err, store.ErrNotFound) {
		return AggregateView{}, fmt.Errorf("%w: %s %q has no events", ErrAggregateNotFound, t.Name(), id)
	}
	if err != nil {
		return AggregateView{}, fmt.Errorf("aggregate %s %s: %w", t.Name(), id, err)
	}
	if at.Version > info.Version {
		return AggregateView{}, fmt.Errorf("%w: %s %q is at version %d, there is no version %d", ErrAggregateNotFound, t.Name(), id, info.Version, at.Version)
	}
	l, err := actors.LoadAggregateAt(ctx, e.deps, t, id, actors.AggregatePoint{Version: at.Version, At: at.Time})
	if err != nil {
		return AggregateView{}, err
	}
	if l.Version == 0 {
		return AggregateView{}, fmt.Errorf("%w: %s %q did not exist yet at %s", ErrAggregateNotFound, t.Name(), id, at.Time.Format(time.RFC3339Nano))
	}
	return AggregateView{Service: service, Type: t.Name(), ID: id, Version: l.Version, At: l.At, Latest: info.Version, State: l.State}, nil
}

// ForgetResponse is the body of POST /v1/subjects/{id}/forget.
type ForgetResponse struct {
	Subject   string `json:"subject"`
	Forgotten bool   `json:"forgotten"`
}

// Forget forgets a data subject (crypto-shredding): it deletes the
// subject's key, so that the fields tagged `sagaflow:"personal"` of every
// event sealed under it read as redacted from now on. Streams still load
// and every other field is unchanged. The aggregate actors of this engine
// reload before their next command; other engines sharing the store stop
// reading the fields after at most their key cache TTL (30s).
func (e *Engine) Forget(ctx context.Context, subject string) error {
	if !e.running.Load() {
		return ErrNotRunning
	}
	sh, ok := e.deps.Sealer.(*shred.Shredder)
	if !ok {
		return errors.New("forget: the engine has no shredder")
	}
	if err := store.ValidateSubject(subject); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if err := sh.Forget(ctx, subject); err != nil {
		return err
	}
	e.deps.NoteForgotten()
	return nil
}

// encodeState turns a view's state into JSON for the admin API.
func encodeState(v AggregateView) (AggregateView, error) {
	data, err := json.Marshal(v.State)
	if err != nil {
		return AggregateView{}, fmt.Errorf("encode state of %s %s: %w", v.Type, v.ID, err)
	}
	v.State = json.RawMessage(data)
	return v, nil
}
