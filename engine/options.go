package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sagaflow/sagaflow/readmodel"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/transport"
)

// Options configure an Engine. The zero value runs the embedded default in
// ./sagaflow-data with the admin API on 127.0.0.1:8080.
type Options struct {
	// Name names this engine: it is the saga queue's name and the source of
	// the messages it sends (default "sagaflow").
	Name string
	// DataDir holds the embedded store when Store is nil (default "sagaflow-data").
	DataDir string
	// Store overrides the embedded store.
	Store store.Store
	// Transport overrides the in-process transport.
	Transport transport.Transport
	// ReadModels keeps the projections' read models (default: a bbolt
	// file readmodels.db in DataDir, opened when projections are
	// registered).
	ReadModels readmodel.Store
	// ProjectionGapWait is how long a projection holds an event that
	// arrived ahead of a missing one (default projection.DefaultGapWait).
	ProjectionGapWait time.Duration
	// StreamHeartbeat is how often an idle read-model event stream sends
	// a comment line, so that proxies and clients see it alive (default
	// 15s).
	StreamHeartbeat time.Duration
	// Partitions is the number of partitions per queue (default 16).
	Partitions int
	// Prefetch bounds unsettled deliveries per partition (default 64).
	Prefetch int
	// IdleTimeout passivates a key's actor after this long without
	// messages (default 2m; negative: never).
	IdleTimeout time.Duration
	// AdminAddr is where the admin HTTP API listens (default
	// "127.0.0.1:8080"; "off" disables it; port 0 picks a free port).
	AdminAddr string
	// TimerInterval is how often the store is searched for due timers the
	// engine was not told of: set before a restart or by another engine
	// process (default 1s). Timers this engine sets wake it when due.
	TimerInterval time.Duration
	// RelayInterval is how often the outbox relay looks for unpublished
	// messages (default 1s).
	RelayInterval time.Duration
	// RetryDelay is how long a message whose handling kept failing in
	// place (its commit failed CommitAttempts times: a store outage) waits
	// before the transport delivers it again; the delay doubles with each
	// delivery up to MaxRetryDelay (defaults 1s and 2m). At the transport's
	// delivery limit it is dead-lettered.
	RetryDelay, MaxRetryDelay time.Duration
	// AdminToken, when set, is the bearer token every admin API call
	// (except /healthz and /readyz) must carry. It is required when
	// AdminAddr is not a loopback address.
	AdminToken string
	// Circuit configures the circuit breaker the engine keeps per
	// destination service that no aggregate of this engine serves (remote
	// participants): after Failures technical failures or timeouts in a
	// row (default 10) the sagas that would send to it pause, without
	// using up attempts, for OpenFor (default 30s); then a probe goes and,
	// if it is answered, they resume. Failures < 0 turns breakers off.
	Circuit CircuitSettings
	// Circuits overrides Circuit per service; a service named here gets a
	// breaker even when an aggregate of this engine serves it.
	Circuits map[string]CircuitSettings
	// ShutdownTimeout bounds the graceful stop (default 10s).
	ShutdownTimeout time.Duration
	// Logger receives the engine's logs (default slog.Default()).
	Logger *slog.Logger
	// Now is the engine's clock (default time.Now).
	Now func() time.Time
}

// AdminOff is the AdminAddr value that disables the admin API.
const AdminOff = "off"

func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = "sagaflow"
	}
	if o.DataDir == "" {
		o.DataDir = "sagaflow-data"
	}
	if o.Partitions == 0 {
		o.Partitions = transport.DefaultPartitions
	}
	if o.Prefetch == 0 {
		o.Prefetch = 64
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.AdminAddr == "" {
		o.AdminAddr = "127.0.0.1:8080"
	}
	if o.TimerInterval == 0 {
		o.TimerInterval = time.Second
	}
	if o.RelayInterval == 0 {
		o.RelayInterval = time.Second
	}
	if o.StreamHeartbeat <= 0 {
		o.StreamHeartbeat = 15 * time.Second
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// validate names every setting that cannot work.
func (o Options) validate() error {
	var errs []error
	if o.Partitions < 1 || o.Partitions > 4096 {
		errs = append(errs, fmt.Errorf("partitions %d: want 1 to 4096", o.Partitions))
	}
	if o.Prefetch < 1 || o.Prefetch > 65535 {
		errs = append(errs, fmt.Errorf("prefetch %d: want 1 to 65535", o.Prefetch))
	}
	if o.TimerInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("timer interval %v: want at least 1ms", o.TimerInterval))
	}
	if o.RelayInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("relay interval %v: want at least 1ms", o.RelayInterval))
	}
	if err := validateAdmin(o.AdminAddr, o.AdminToken); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("engine options: %w", errors.Join(errs...))
}
