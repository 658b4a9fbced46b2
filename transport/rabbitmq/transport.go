package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/transport"
)

// Sentinel errors of this transport; test for them with errors.Is.
var (
	// ErrNotReady: the connection is recovering, failed, or blocked by the
	// broker, and did not come back within the wait allowed.
	ErrNotReady = errors.New("rabbitmq: not ready")
	// ErrNotConfirmed: the broker did not confirm a publish: it nacked it
	// (a full queue rejects publishes) or the connection was lost before
	// the confirm arrived. The message may or may not have been taken;
	// publish it again.
	ErrNotConfirmed = errors.New("rabbitmq: publish not confirmed")
)

// Defaults of the options.
const (
	DefaultDeliveryLimit    = 20
	DefaultName             = "sagaflow"
	DefaultPublishTimeout   = 10 * time.Second
	DefaultReconnectWait    = time.Second
	DefaultReconnectRetries = 300
	// publishChannels is the size of the pool of confirm-mode channels.
	publishChannels = 4
	// fenceQuiet is how long the consumers of a lost channel must have
	// received nothing before its reconnect may go on (see fence).
	fenceQuiet = 150 * time.Millisecond
	// fenceMax bounds a fence.
	fenceMax = 3 * time.Second
)

// Option configures a Transport.
type Option func(*config)

type config struct {
	partitions     int
	limit          int
	maxSize        int
	logger         *slog.Logger
	publishTimeout time.Duration
	name           string
	reconnectWait  time.Duration
	reconnectTries int
	retryDelays    []time.Duration
}

// WithPartitions sets the number of partitions per queue (default
// transport.DefaultPartitions; values below 1 mean 1). Every process that
// shares the broker must use the same number.
func WithPartitions(n int) Option { return func(c *config) { c.partitions = n } }

// WithDeliveryLimit sets how many deliveries a message gets when each one is
// requeued: the Requeue of delivery number n dead-letters it (default
// DefaultDeliveryLimit; values below 1 mean 1). It is also the quorum
// queues' x-delivery-limit, so changing it needs new queues.
func WithDeliveryLimit(n int) Option { return func(c *config) { c.limit = n } }

// WithMaxMessageSize sets the largest encoded envelope, in bytes, that
// Publish accepts and consumers decode (default and values below 1:
// message.DefaultMaxSize).
func WithMaxMessageSize(bytes int) Option { return func(c *config) { c.maxSize = bytes } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithPublishTimeout bounds each Publish, including the wait for a
// recovering or blocked connection and for the confirm (default
// DefaultPublishTimeout).
func WithPublishTimeout(d time.Duration) Option { return func(c *config) { c.publishTimeout = d } }

// DefaultRetryDelays are the delays of the retry queues (WithRetryDelays).
var DefaultRetryDelays = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}

// WithRetryDelays sets the delays the transport can hold a message back
// for (Delivery.Retry): one retry queue per delay. A Retry waits for the
// shortest of them that is at least its delay (the longest if none is).
// Delays below a millisecond are ignored; with none left the defaults
// apply. Every process sharing a name must use the same delays.
func WithRetryDelays(delays ...time.Duration) Option {
	return func(c *config) { c.retryDelays = delays }
}

// WithName sets the connection name shown by the broker (with suffixes
// "-publish" and "-consume") and the prefix of the exchanges and of the
// dead-letter queue (default DefaultName).
func WithName(name string) Option { return func(c *config) { c.name = name } }

// WithReconnect sets the automatic recovery's wait between attempts (plus
// up to 500ms of jitter) and how many attempts it makes before it gives up
// (defaults DefaultReconnectWait, DefaultReconnectRetries). After that the
// transport stays down and Ready says so.
func WithReconnect(wait time.Duration, attempts int) Option {
	return func(c *config) { c.reconnectWait, c.reconnectTries = wait, attempts }
}

// Transport is the RabbitMQ transport.Transport. It is safe for concurrent
// use; make one with Dial.
type Transport struct {
	cfg config
	log *slog.Logger

	pub *link // publishing connection
	con *link // consuming connection (also topology and browsing)

	stop chan struct{} // closed by Close
	// released is closed by Close after it closed the connections. The
	// goroutines that drain the library's channels stop then even if the
	// library never closes those channels: it does not when Close comes
	// while a lost connection is about to be recovered (v1.16.0).
	released  chan struct{}
	gate      sync.RWMutex // Close takes it to set closed; enter reads it
	closed    atomic.Bool
	closeOnce sync.Once
	wg        sync.WaitGroup // goroutines owned by the transport
	ops       sync.WaitGroup // running Declare, Publish, Consume, DeadLetters calls

	pool    []*pubChan
	nextPub atomic.Uint64

	reconnects    atomic.Uint64 // connections recovered (see Reconnects)
	channelErrors atomic.Uint64 // channels closed by the broker (see ChannelErrors)

	topoMu   sync.Mutex // one caller at a time on topo
	topo     *amqp.Channel
	declared sync.Map // queue name -> true, declared by this transport

	chMu    sync.Mutex
	idle    []*amqp.Channel // consume channels with no consumer, for reuse
	dirty   []*dirtyChan    // channels whose consumers could not be cancelled
	sessMu  sync.Mutex
	session map[*session]struct{}
	tagSeq  atomic.Uint64
}

var _ transport.Transport = (*Transport)(nil)

// Dial connects to the broker at url (amqp://user:pass@host:port/vhost),
// declares the shared exchanges and the dead-letter queue, and returns the
// transport. ctx bounds the dial and the declarations.
func Dial(ctx context.Context, url string, opts ...Option) (*Transport, error) {
	cfg := config{
		partitions:     transport.DefaultPartitions,
		limit:          DefaultDeliveryLimit,
		maxSize:        message.DefaultMaxSize,
		logger:         slog.Default(),
		publishTimeout: DefaultPublishTimeout,
		name:           DefaultName,
		reconnectWait:  DefaultReconnectWait,
		reconnectTries: DefaultReconnectRetries,
	}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.partitions = max(cfg.partitions, 1)
	cfg.limit = max(cfg.limit, 1)
	if cfg.maxSize < 1 {
		cfg.maxSize = message.DefaultMaxSize
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	if cfg.publishTimeout <= 0 {
		cfg.publishTimeout = DefaultPublishTimeout
	}
	if cfg.name == "" {
		cfg.name = DefaultName
	}
	if cfg.reconnectWait <= 0 {
		cfg.reconnectWait = DefaultReconnectWait
	}
	cfg.reconnectTries = max(cfg.reconnectTries, 1)
	cfg.retryDelays = normalizeDelays(cfg.retryDelays)
	t := &Transport{
		cfg:      cfg,
		log:      cfg.logger.With("transport", "rabbitmq", "name", cfg.name),
		stop:     make(chan struct{}),
		released: make(chan struct{}),
		session:  make(map[*session]struct{}),
	}
	var err error
	if t.pub, err = t.dial(ctx, url, "publish"); err != nil {
		return nil, err
	}
	if t.con, err = t.dial(ctx, url, "consume"); err != nil {
		_ = t.Close()
		return nil, err
	}
	if err := t.openPool(); err != nil {
		_ = t.Close()
		return nil, err
	}
	if err := t.declareShared(ctx); err != nil {
		_ = t.Close()
		return nil, err
	}
	return t, nil
}

// Names of the shared topology.
func (t *Transport) directExchange() string { return t.cfg.name + ".direct" }
func (t *Transport) eventExchange() string  { return t.cfg.name + ".events" }
func (t *Transport) deadExchange() string   { return t.cfg.name + ".dlx" }

// DeadLetterQueue is the name of the queue that holds the dead letters.
func (t *Transport) DeadLetterQueue() string { return t.cfg.name + ".dead-letters" }

// retryName names the exchange and the queue of the retry delay d.
func (t *Transport) retryName(d time.Duration) string {
	return t.cfg.name + ".retry." + strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// Exchanges returns the names of the exchanges the transport declares.
func (t *Transport) Exchanges() []string {
	names := []string{t.directExchange(), t.eventExchange(), t.deadExchange()}
	for _, d := range t.cfg.retryDelays {
		names = append(names, t.retryName(d))
	}
	return names
}

// Queues returns the broker's names of the queues the transport declares
// for queue (one per partition); with no queue, those it declares for
// itself: the dead-letter queue and the retry queues.
func (t *Transport) Queues(queue string) []string {
	var names []string
	if queue != "" {
		for p := range t.cfg.partitions {
			names = append(names, t.partitionQueue(queue, p))
		}
		return names
	}
	names = append(names, t.DeadLetterQueue())
	for _, d := range t.cfg.retryDelays {
		names = append(names, t.retryName(d))
	}
	return names
}

// RetryDelays returns the delays of the retry queues, shortest first.
func (t *Transport) RetryDelays() []time.Duration { return slices.Clone(t.cfg.retryDelays) }

// retryDelay is the retry queue delay that serves a Retry after d: the
// shortest at least d, or the longest.
func (t *Transport) retryDelay(d time.Duration) time.Duration {
	for _, rd := range t.cfg.retryDelays {
		if rd >= d {
			return rd
		}
	}
	return t.cfg.retryDelays[len(t.cfg.retryDelays)-1]
}

// normalizeDelays sorts delays, drops those under a millisecond and
// duplicates, and falls back to DefaultRetryDelays when none is left.
func normalizeDelays(delays []time.Duration) []time.Duration {
	out := slices.DeleteFunc(slices.Clone(delays), func(d time.Duration) bool { return d < time.Millisecond })
	for i := range out {
		out[i] = out[i].Truncate(time.Millisecond)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		return slices.Clone(DefaultRetryDelays)
	}
	return out
}

// Partitions is the number of partitions per queue.
func (t *Transport) Partitions() int { return t.cfg.partitions }

// Ready returns nil when both connections are open and the broker does not
// block publishing; otherwise it says why (wrapping ErrNotReady, or
// transport.ErrClosed after Close).
func (t *Transport) Ready() error {
	if t.closed.Load() {
		return fmt.Errorf("rabbitmq %s: %w", t.cfg.name, transport.ErrClosed)
	}
	for _, l := range []*link{t.pub, t.con} {
		if err := l.ready(true); err != nil {
			return err
		}
	}
	return nil
}

// PublishReady returns nil when a publish can go out now: the publish
// connection is open and the broker blocks neither connection. A memory
// or disk alarm is the whole broker's, and the broker often tells the
// consume connection first (the publish connection learns it only when it
// next publishes), so a block of either counts; a consume connection that
// is recovering does not stop publishing. Otherwise it says why (wrapping
// ErrNotReady, or transport.ErrClosed after Close).
func (t *Transport) PublishReady() error {
	if t.closed.Load() {
		return fmt.Errorf("rabbitmq %s: %w", t.cfg.name, transport.ErrClosed)
	}
	if err := t.pub.ready(true); err != nil {
		return err
	}
	return t.con.blockedErr()
}

// Close stops every consumer, waits for each Consume to return, and closes
// the connections; unsettled deliveries go back to their queues (the
// broker requeues them). Afterwards Declare, Publish and Consume fail with
// transport.ErrClosed. Closing again does nothing.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.gate.Lock()
		t.closed.Store(true)
		close(t.stop)
		t.gate.Unlock()
		t.ops.Wait() // each returns promptly once stop is closed
		for _, l := range []*link{t.pub, t.con} {
			if l != nil {
				if err := l.conn.CloseDeadline(time.Now().Add(5 * time.Second)); err != nil && !errors.Is(err, amqp.ErrClosed) {
					t.log.Debug("rabbitmq: close connection", "role", l.role, "err", err)
				}
			}
		}
		close(t.released)
		done := make(chan struct{})
		go func() { t.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.log.Warn("rabbitmq: goroutines still running 10s after Close")
		}
	})
	return nil
}

// enter registers a running operation, or reports false after Close. Close
// waits for the operations before it closes the connections, so nothing
// starts a goroutine of t.wg after Close waits for them.
func (t *Transport) enter() bool {
	t.gate.RLock()
	defer t.gate.RUnlock()
	if t.closed.Load() {
		return false
	}
	t.ops.Add(1)
	return true
}

func (t *Transport) errClosed(op string) error {
	return fmt.Errorf("rabbitmq %s: %s: %w", t.cfg.name, op, transport.ErrClosed)
}

// link is one connection with automatic recovery, and what the transport
// knows of its state from the notifications it drains.
type link struct {
	t    *Transport
	role string
	conn *amqp.Connection

	mu      sync.Mutex
	state   amqp.LifeCycleState
	blocked string        // the broker's reason while it blocks the connection
	failed  error         // set when recovery gave up
	changed chan struct{} // closed and replaced on every change
}

func (t *Transport) dial(ctx context.Context, url, role string) (*link, error) {
	l := &link{t: t, role: role, state: amqp.StateOpen, changed: make(chan struct{})}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(t.cfg.name + "-" + role)
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(min(timeout, time.Until(dl)), time.Millisecond)
	}
	conf := amqp.Config{
		Properties: props,
		Heartbeat:  10 * time.Second,
		Dial:       dialer(timeout),
		Recovery: &amqp.Recovery{
			ReconnectionConfig: &amqp.ReconnectionConfig{MaxRetryCount: t.cfg.reconnectTries, RetryInterval: t.cfg.reconnectWait},
			ConnectionRecovery: &recoveryHooks{l: l},
			OnTopologyEntityError: func(_ *amqp.Connection, e amqp.TopologyRecoveryEntity) bool {
				t.log.Warn("rabbitmq: topology recovery skipped an entity", "role", role, "err", e.Error())
				return true
			},
		},
	}
	conn, err := amqp.DialConfig(url, conf)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq %s: dial %s: %w", t.cfg.name, role, err)
	}
	l.conn = conn
	states := make(chan *amqp.StateChanged, 16)
	conn.NotifyStateChange(states)
	blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	t.wg.Add(2)
	go func() {
		defer t.wg.Done()
		for {
			select {
			case sc, ok := <-states:
				if !ok {
					return
				}
				l.onState(sc)
			case <-t.released:
				return
			}
		}
	}()
	go func() {
		defer t.wg.Done()
		for {
			select {
			case b, ok := <-blocked:
				if !ok {
					return
				}
				l.onBlocked(b)
			case <-t.released:
				return
			}
		}
	}()
	return l, nil
}

// dialer dials TCP with a timeout and bounds the AMQP handshake too.
func dialer(timeout time.Duration) func(network, addr string) (net.Conn, error) {
	return amqp.DefaultDial(timeout)
}

func (l *link) signal() {
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *link) onState(sc *amqp.StateChanged) {
	l.mu.Lock()
	l.state = sc.To
	if sc.To == amqp.StateClosed && sc.Err != nil {
		l.failed = sc.Err
	}
	if sc.To != amqp.StateOpen {
		l.blocked = "" // a new connection starts unblocked
	}
	l.signal()
	l.mu.Unlock()
	log := l.t.log.With("role", l.role, "from", sc.From.String(), "to", sc.To.String())
	switch {
	case sc.Err != nil:
		log.Error("rabbitmq: connection recovery gave up", "err", sc.Err)
	case sc.To == amqp.StateOpen:
		if sc.From == amqp.StateReconnecting {
			l.t.reconnects.Add(1)
		}
		log.Info("rabbitmq: connection open", "skipped_topology", len(sc.SkippedTopologyEntities))
		if l.role == "consume" {
			l.t.reapDirty()
		}
	case sc.To == amqp.StateReconnecting:
		log.Warn("rabbitmq: connection lost; recovering")
	default:
		log.Info("rabbitmq: connection state")
	}
}

func (l *link) onBlocked(b amqp.Blocking) {
	l.mu.Lock()
	if b.Active {
		l.blocked = b.Reason
		if l.blocked == "" {
			l.blocked = "no reason given"
		}
	} else {
		l.blocked = ""
	}
	l.signal()
	l.mu.Unlock()
	if b.Active {
		l.t.log.Warn("rabbitmq: broker blocked the connection", "role", l.role, "reason", b.Reason)
	} else {
		l.t.log.Info("rabbitmq: broker unblocked the connection", "role", l.role)
	}
}

// ready says why the link cannot be used now, or nil.
func (l *link) ready(needUnblocked bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.readyLocked(needUnblocked)
}

// blockedErr says why the broker blocks the link's connection, or nil.
func (l *link) blockedErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.blocked != "" {
		return fmt.Errorf("%w: broker blocks the %s connection: %s", ErrNotReady, l.role, l.blocked)
	}
	return nil
}

func (l *link) readyLocked(needUnblocked bool) error {
	switch {
	case l.failed != nil:
		return fmt.Errorf("%w: %s connection failed and recovery gave up: %v", ErrNotReady, l.role, l.failed)
	case l.state != amqp.StateOpen:
		return fmt.Errorf("%w: %s connection is %s", ErrNotReady, l.role, l.state)
	case needUnblocked && l.blocked != "":
		return fmt.Errorf("%w: broker blocks the %s connection: %s", ErrNotReady, l.role, l.blocked)
	}
	return nil
}

// snapshot returns the link's readiness and a channel closed on its next
// change.
func (l *link) snapshot(needUnblocked bool) (error, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.readyLocked(needUnblocked), l.changed
}

// await waits until the link is ready, ctx is done or the transport closes.
func (l *link) await(ctx context.Context, needUnblocked bool) error {
	for {
		err, changed := l.snapshot(needUnblocked)
		if err == nil {
			return nil
		}
		l.mu.Lock()
		failed := l.failed != nil
		l.mu.Unlock()
		if failed {
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%w (waited until %v)", err, context.Cause(ctx))
		case <-l.t.stop:
			return l.t.errClosed("wait for connection")
		}
	}
}

// recoveryHooks wraps the library's default recovery: it runs the
// transport's fence before the library reconnects a lost connection or
// channel (the hooks run synchronously, before the reconnect starts).
type recoveryHooks struct {
	l   *link
	def amqp.DefaultConnectionRecovery
}

func (h *recoveryHooks) OnConnectionClose(conn *amqp.Connection, err *amqp.Error) {
	h.l.t.log.Warn("rabbitmq: connection closed by error", "role", h.l.role, "err", err)
	if h.l.role == "consume" && !h.l.t.closed.Load() {
		h.l.t.fence(nil)
	}
	h.def.OnConnectionClose(conn, err)
}

func (h *recoveryHooks) OnChannelClose(ch *amqp.Channel, err *amqp.Error) {
	h.l.t.channelErrors.Add(1)
	h.l.t.log.Warn("rabbitmq: channel closed by error", "role", h.l.role, "err", err)
	// A channel already reopened (by the connection's recovery, if this
	// callback comes late) carries a new session's deliveries: no fence.
	if h.l.role == "consume" && ch.IsClosed() {
		h.l.t.fence(ch)
	}
	h.def.OnChannelClose(ch, err)
}
