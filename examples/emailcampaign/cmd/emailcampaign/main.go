// Command emailcampaign runs the B customers email campaign.
//
//	emailcampaign [demo]   all services in this process on the embedded
//	                       default, an SMTP sink on loopback, 200
//	                       customers and 2 campaigns; prints the reports
//	emailcampaign seed     the seeding and load command: -customers N
//	                       -campaigns M; embedded unless -amqp-url is set,
//	                       then against running service processes (their
//	                       commands over RabbitMQ, campaigns through the
//	                       campaign service's admin API, -campaigns-admin)
//	emailcampaign serve    all services in one process until Ctrl-C, with
//	                       the admin API (read models, change stream)
//	emailcampaign sink     an SMTP sink on -sink-addr (loopback) until
//	                       Ctrl-C, for the distributed mode's mailer
//	emailcampaign teardown delete a distributed run's RabbitMQ topology
//
// Progress goes to stderr, the reports to stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sagaflow/sagaflow/client"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/campaigns"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/customers"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/loadgen"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/smtpsink"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/system"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "demo"
	if len(args) > 0 && (args[0] == "demo" || args[0] == "seed" || args[0] == "serve" || args[0] == "sink" || args[0] == "teardown") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("emailcampaign "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := system.Flags(fs)
	n := fs.Int("customers", 200, "customers to seed")
	m := fs.Int("campaigns", 2, "campaigns to run")
	budget := fs.Int("budget", 10000, "each campaign's send budget (mails)")
	seed := fs.Uint64("seed", 1, "random seed of the generated data")
	prefix := fs.String("prefix", fmt.Sprintf("r%d", time.Now().Unix()%100000), "prefix of the generated IDs (unique per run)")
	admin := fs.String("campaigns-admin", os.Getenv("EMAILCAMPAIGN_CAMPAIGNS_ADMIN"), "admin API URL of the campaign service (seed against processes; EMAILCAMPAIGN_CAMPAIGNS_ADMIN)")
	verbose := fs.Bool("v", false, "log the services' info messages")
	sinkAddr := fs.String("sink-addr", "127.0.0.1:2525", "sink: where the SMTP sink listens")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "emailcampaign %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return 2
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	plan := loadgen.Plan{Customers: *n, Campaigns: *m, Seed: *seed, Prefix: *prefix}
	if *n < 1 || *m < 0 || *budget < 1 {
		fmt.Fprintln(stderr, "emailcampaign: -customers and -budget must be positive, -campaigns at least 0")
		return 2
	}
	var err error
	switch {
	case cmd == "sink":
		err = runSink(ctx, *sinkAddr, stdout, stderr)
	case cmd == "teardown":
		err = system.Teardown(ctx, *cfg)
	case (cmd == "demo" || cmd == "seed") && cfg.AMQPURL == "" && cfg.MongoURI == "" && !flagSet(fs, "data-dir"):
		// A temporary embedded store unless -data-dir names one.
		dir, derr := os.MkdirTemp("", "emailcampaign-demo-")
		if derr != nil {
			return 1
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
		err = allInOne(ctx, *cfg, stderr, func(ctx context.Context, r system.Running) error {
			return seedAndReport(ctx, loadgen.EngineTarget{Engine: r.Engine, Reader: r.Reader}, plan, *budget, stdout, stderr)
		})
	case cmd == "seed" && cfg.AMQPURL != "":
		err = seedRemote(ctx, *cfg, *admin, plan, *budget, stdout, stderr)
	case cmd == "serve":
		err = allInOne(ctx, *cfg, stderr, func(ctx context.Context, r system.Running) error {
			fmt.Fprintf(stderr, "serving; admin API %s (read models: /v1/readmodels/%s, live: /v1/readmodels/stream)\n", r.Engine.AdminURL(), campaigns.ReportsModel)
			<-ctx.Done()
			return nil
		})
	default:
		if cfg.AMQPURL != "" || cfg.MongoURI != "" {
			fmt.Fprintln(stderr, "emailcampaign demo runs on the embedded default; use seed against processes")
			return 2
		}
		err = allInOne(ctx, *cfg, stderr, func(ctx context.Context, r system.Running) error {
			return seedAndReport(ctx, loadgen.EngineTarget{Engine: r.Engine, Reader: r.Reader}, plan, *budget, stdout, stderr)
		})
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "emailcampaign %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// allInOne runs every service in this process with an SMTP sink (unless
// -smtp names a server) and calls f once they serve.
func allInOne(ctx context.Context, cfg system.Config, stderr io.Writer, f func(context.Context, system.Running) error) error {
	if cfg.SMTPAddr == "" {
		sink, err := smtpsink.Start("127.0.0.1:0", loadgen.BounceDomain)
		if err != nil {
			return err
		}
		defer sink.Close()
		cfg.SMTPAddr = sink.Addr()
		fmt.Fprintf(stderr, "SMTP sink on %s (mail to @%s bounces)\n", sink.Addr(), loadgen.BounceDomain)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan system.Running, 1)
	done := make(chan error, 1)
	go func() { done <- system.Run(ctx, system.RoleAll, cfg, func(r system.Running) { ready <- r }) }()
	var r system.Running
	select {
	case r = <-ready:
	case err := <-done:
		return err
	}
	ferr := f(ctx, r)
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) && ferr == nil {
		return err
	}
	return ferr
}

func seedAndReport(ctx context.Context, t loadgen.Target, plan loadgen.Plan, budget int, stdout, stderr io.Writer) error {
	start := time.Now()
	if _, err := loadgen.SeedCustomers(ctx, t, plan, stderr); err != nil {
		return err
	}
	seeded := time.Since(start)
	res, err := loadgen.RunCampaigns(ctx, t, plan, budget, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "seeded %d customers in %v; %d campaigns in %v\n", plan.Customers, seeded.Round(time.Millisecond), plan.Campaigns, (time.Since(start) - seeded).Round(time.Millisecond))
	return loadgen.Print(stdout, res.Reports)
}

// seedRemote seeds running service processes.
func seedRemote(ctx context.Context, cfg system.Config, admin string, plan loadgen.Plan, budget int, stdout, stderr io.Writer) error {
	if admin == "" {
		return errors.New("-campaigns-admin is required with -amqp-url")
	}
	if cfg.Topology == "" {
		return errors.New("-topology is required with -amqp-url (the services' topology name)")
	}
	tr, err := rabbitmq.Dial(ctx, cfg.AMQPURL, rabbitmq.WithName(cfg.Topology), rabbitmq.WithPartitions(cfg.Partitions), rabbitmq.WithLogger(cfg.Logger))
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	defer tr.Close()
	// The registry of the commands the seed sends: an engine that never
	// runs holds the services' registrations.
	e := engine.New(engine.Options{AdminAddr: engine.AdminOff})
	customers.Setup(e)
	e.Register(campaigns.Messages()...)
	if err := e.Err(); err != nil {
		return err
	}
	t := loadgen.RemoteTarget{Transport: tr, Registry: e.Registry(), Campaigns: client.New(admin)}
	return seedAndReport(ctx, t, plan, budget, stdout, stderr)
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// runSink serves an SMTP sink until ctx ends and then prints how many
// mails each campaign's customers got.
func runSink(ctx context.Context, addr string, stdout, stderr io.Writer) error {
	sink, err := smtpsink.Start(addr, loadgen.BounceDomain)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "ready SMTP sink on %s (mail to @%s bounces)\n", sink.Addr(), loadgen.BounceDomain)
	<-ctx.Done()
	if err := sink.Close(); err != nil {
		return err
	}
	for campaign, per := range sink.PerCampaign() {
		total, twice := 0, 0
		for _, k := range per {
			total += k
			if k > 1 {
				twice++
			}
		}
		fmt.Fprintf(stdout, "sink: %s: %d mails to %d customers, %d customers got more than one\n", campaign, total, len(per), twice)
	}
	return nil
}
