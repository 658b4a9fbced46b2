// Package system wires the email-campaign example's services into running
// processes: all four in one process on the embedded default (bbolt
// store and read models, in-process transport), or one service per
// process over RabbitMQ and MongoDB. It owns every goroutine it starts
// (engine, inboxes, mailer) and stops and waits for them when the
// context given to Run ends.
package system

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/campaigns"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/classification"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/customers"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/inbox"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/mailer"
	"github.com/sagaflow/sagaflow/participant"
	"github.com/sagaflow/sagaflow/readmodel"
	rmembedded "github.com/sagaflow/sagaflow/readmodel/embedded"
	rmmongo "github.com/sagaflow/sagaflow/readmodel/mongo"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
	mongostore "github.com/sagaflow/sagaflow/store/mongo"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/transport/inmem"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
)

// Roles a process can run.
const (
	RoleAll            = "all"
	RoleCustomers      = "customers"
	RoleClassification = "classification"
	RoleCampaigns      = "campaigns"
	RoleMailer         = "mailer"
)

// Config says where a process keeps its data and how it reaches the
// others. Empty AMQPURL and MongoURI mean the embedded default.
type Config struct {
	// DataDir holds the embedded store and read models (embedded default).
	DataDir string
	// MongoURI and Database (a prefix; each service gets Database_role)
	// select MongoDB.
	MongoURI, Database string
	// AMQPURL and Topology (the RabbitMQ name prefix, unique per run)
	// select RabbitMQ.
	AMQPURL, Topology string
	// SMTPAddr is the SMTP server the mailer sends to.
	SMTPAddr string
	// AdminAddr is the admin API's address ("off" or empty: none; port 0
	// picks one).
	AdminAddr string
	// Partitions per queue (default 8).
	Partitions int
	// Circuit is the campaign engine's breaker for the mailer (default
	// Failures 5, OpenFor 3s).
	Circuit engine.CircuitSettings
	// MailerWorkers bounds each batch's parallel sends (default 4).
	MailerWorkers int
	// BeforeSend is passed to the mailer (tests).
	BeforeSend func(ctx context.Context, campaign, customer string)
	// Logger receives every service's logs (default slog.Default()).
	Logger *slog.Logger
}

// Running is what a started process offers its caller.
type Running struct {
	// Engine is the process's engine (nil for the mailer).
	Engine *engine.Engine
	// Reader reads the campaign read models (nil for customers and
	// classification).
	Reader *campaigns.Reader
}

func (c Config) withDefaults() Config {
	if c.Partitions == 0 {
		c.Partitions = 8
	}
	if c.Circuit.Failures == 0 {
		c.Circuit = engine.CircuitSettings{Failures: 5, OpenFor: 3 * time.Second}
	}
	if c.Database == "" {
		c.Database = "emailcampaign"
	}
	if c.AdminAddr == "" {
		c.AdminAddr = engine.AdminOff
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Run runs role until ctx ends; ready, when set, is called once the
// process serves (its queues declared).
func Run(ctx context.Context, role string, cfg Config, ready func(Running)) error {
	cfg = cfg.withDefaults()
	switch role {
	case RoleAll, RoleCustomers, RoleClassification, RoleCampaigns, RoleMailer:
	default:
		return fmt.Errorf("role %q: want all, customers, classification, campaigns or mailer", role)
	}
	if (cfg.AMQPURL == "") != (cfg.MongoURI == "") {
		return errors.New("set both the AMQP URL and the MongoDB URI (distributed) or neither (embedded)")
	}
	if role != RoleAll && cfg.AMQPURL == "" {
		return fmt.Errorf("role %s runs as its own process: it needs RabbitMQ and MongoDB", role)
	}
	if (role == RoleAll || role == RoleMailer) && cfg.SMTPAddr == "" {
		return errors.New("the mailer needs an SMTP address")
	}
	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			if err := closers[i](); err != nil {
				cfg.Logger.Warn("close", "error", err)
			}
		}
	}()
	tr, err := openTransport(ctx, cfg, role)
	if err != nil {
		return err
	}
	closers = append(closers, tr.Close)
	db := cfg.Database + "_" + role
	if role == RoleMailer {
		db = cfg.Database + "_" + RoleCampaigns // the read models it checks
	}
	var st store.Store
	var rm readmodel.Store
	if cfg.MongoURI == "" {
		s, err := embedded.Open(ctx, cfg.DataDir)
		if err != nil {
			return fmt.Errorf("open store in %s: %w", cfg.DataDir, err)
		}
		closers = append(closers, s.Close)
		st = s
		r, err := rmembedded.Open(filepath.Join(cfg.DataDir, "readmodels.db"))
		if err != nil {
			return fmt.Errorf("open read models in %s: %w", cfg.DataDir, err)
		}
		closers = append(closers, r.Close)
		rm = r
	} else {
		sdb := db
		if role == RoleMailer {
			sdb = cfg.Database + "_" + RoleMailer
		}
		s, err := mongostore.Open(ctx, cfg.MongoURI, mongostore.WithDatabase(sdb), mongostore.WithLogger(cfg.Logger))
		if err != nil {
			return fmt.Errorf("open store %s: %w", sdb, err)
		}
		closers = append(closers, s.Close)
		st = s
		if role == RoleMailer || role == RoleCampaigns {
			r, err := rmmongo.Open(ctx, cfg.MongoURI, rmmongo.WithDatabase(db))
			if err != nil {
				return fmt.Errorf("open read models %s: %w", db, err)
			}
			closers = append(closers, r.Close)
			rm = r
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(runCtx)
	// fail stops what was started and waits for it before returning err.
	fail := func(err error) error {
		cancel()
		_ = g.Wait()
		return err
	}
	run := Running{}
	if rm != nil {
		run.Reader = campaigns.NewReader(rm)
	}
	var e *engine.Engine
	if role != RoleMailer {
		name := "emailcampaign"
		if role != RoleAll {
			name = "ec-" + role
		}
		e = engine.New(engine.Options{
			Name: name, Store: st, Transport: tr, ReadModels: rm, DataDir: cfg.DataDir,
			Partitions: cfg.Partitions, AdminAddr: cfg.AdminAddr, Logger: cfg.Logger,
			Circuits:      map[string]engine.CircuitSettings{mailer.Service: cfg.Circuit},
			RelayInterval: 200 * time.Millisecond, TimerInterval: 200 * time.Millisecond,
		})
		if role == RoleAll || role == RoleCustomers {
			customers.Setup(e)
		}
		if role == RoleAll || role == RoleClassification {
			classification.Setup(e)
		}
		if role == RoleAll || role == RoleCampaigns {
			campaigns.Setup(e, campaigns.Config{ReadModels: rm})
		}
		if err := e.Err(); err != nil {
			return fmt.Errorf("register %s: %w", role, err)
		}
		run.Engine = e
		g.Go(func() error { return e.Run(gctx) })
		select {
		case <-e.Ready():
		case <-gctx.Done():
			return g.Wait()
		}
		var inboxes []*inbox.Inbox
		if role == RoleAll || role == RoleClassification {
			in, err := classification.Inbox(tr, e.Registry(), e.Send, cfg.Logger)
			if err != nil {
				return fail(err)
			}
			inboxes = append(inboxes, in)
		}
		if role == RoleAll || role == RoleCampaigns {
			in, err := campaigns.Inbox(tr, e.Registry(), e.Send, cfg.Logger)
			if err != nil {
				return fail(err)
			}
			inboxes = append(inboxes, in)
		}
		for _, in := range inboxes {
			if err := in.Declare(gctx); err != nil {
				return fail(err)
			}
			g.Go(func() error { return in.Run(gctx) })
		}
	}
	if role == RoleAll || role == RoleMailer {
		report, err := campaigns.OutcomeReporter(tr)
		if err != nil {
			return fail(err)
		}
		m, err := mailer.New(mailer.Config{
			SMTPAddr: cfg.SMTPAddr, Workers: cfg.MailerWorkers, Checker: run.Reader, OnOutcome: report,
			Deduper: participant.NewStoreDeduper(st), BeforeSend: cfg.BeforeSend, Logger: cfg.Logger,
		})
		if err != nil {
			return fail(err)
		}
		p, err := m.Participant(tr, participant.WithRetry(1, 50*time.Millisecond, 50*time.Millisecond))
		if err != nil {
			return fail(err)
		}
		g.Go(func() error { return p.Run(gctx) })
	}
	if ready != nil {
		ready(run)
	}
	return g.Wait()
}

func openTransport(ctx context.Context, cfg Config, role string) (transport.Transport, error) {
	if cfg.AMQPURL == "" {
		return inmem.New(inmem.WithPartitions(cfg.Partitions)), nil
	}
	if cfg.Topology == "" {
		return nil, errors.New("distributed mode needs a topology name (unique per run)")
	}
	tr, err := rabbitmq.Dial(ctx, cfg.AMQPURL, rabbitmq.WithName(cfg.Topology), rabbitmq.WithPartitions(cfg.Partitions),
		rabbitmq.WithLogger(cfg.Logger.With("role", role)))
	if err != nil {
		return nil, fmt.Errorf("rabbitmq %s: %w", cfg.Topology, err)
	}
	return tr, nil
}
