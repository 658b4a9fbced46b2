package system

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

// Flags registers the settings of a process on fs, each defaulting to its
// environment variable, and returns the Config they fill.
func Flags(fs *flag.FlagSet) *Config {
	c := &Config{}
	fs.StringVar(&c.DataDir, "data-dir", env("EMAILCAMPAIGN_DATA_DIR", "emailcampaign-data"), "embedded store directory (EMAILCAMPAIGN_DATA_DIR)")
	fs.StringVar(&c.AMQPURL, "amqp-url", os.Getenv("SAGAFLOW_AMQP_URL"), "RabbitMQ URL; empty: embedded (SAGAFLOW_AMQP_URL)")
	fs.StringVar(&c.MongoURI, "mongo-uri", os.Getenv("SAGAFLOW_MONGO_URI"), "MongoDB URI; empty: embedded (SAGAFLOW_MONGO_URI)")
	fs.StringVar(&c.Database, "database", env("EMAILCAMPAIGN_DATABASE", "emailcampaign"), "MongoDB database prefix, one database per service (EMAILCAMPAIGN_DATABASE)")
	fs.StringVar(&c.Topology, "topology", os.Getenv("EMAILCAMPAIGN_TOPOLOGY"), "RabbitMQ name prefix, the same for every process of a run and unique per run (EMAILCAMPAIGN_TOPOLOGY)")
	fs.StringVar(&c.SMTPAddr, "smtp", os.Getenv("EMAILCAMPAIGN_SMTP"), "SMTP server host:port the mailer sends to (EMAILCAMPAIGN_SMTP)")
	fs.StringVar(&c.AdminAddr, "admin-addr", env("EMAILCAMPAIGN_ADMIN_ADDR", "off"), "admin API address, off: none (EMAILCAMPAIGN_ADMIN_ADDR)")
	p, _ := strconv.Atoi(env("EMAILCAMPAIGN_PARTITIONS", "8"))
	fs.IntVar(&c.Partitions, "partitions", p, "partitions per queue, the same in every process (EMAILCAMPAIGN_PARTITIONS)")
	return c
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Main runs role as a process: flags from args, stops gracefully on
// SIGINT or SIGTERM. It returns the exit status.
func Main(role string, args []string) int {
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	cfg := Flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("service", role)
	cfg.Logger = logger
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := Run(ctx, role, *cfg, func(r Running) {
		attrs := []any{"role", role}
		if r.Engine != nil {
			attrs = append(attrs, "admin", r.Engine.AdminURL())
		}
		logger.Info("ready", attrs...)
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", role, err)
		return 1
	}
	return 0
}
