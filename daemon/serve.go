package daemon

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/sagaflow/sagaflow/console"
	"github.com/sagaflow/sagaflow/engine"
	mongostore "github.com/sagaflow/sagaflow/store/mongo"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
)

func engineFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "name", Value: "sagaflow", Usage: "engine name: its saga queue and message source", Sources: cli.EnvVars("SAGAFLOW_NAME")},
		&cli.StringFlag{Name: "data-dir", Value: "sagaflow-data", Usage: "directory of the embedded store (used when --mongo-uri is empty)", Sources: cli.EnvVars("SAGAFLOW_DATA_DIR")},
		&cli.StringFlag{Name: "mongo-uri", Usage: "MongoDB URI (mongodb:// or mongodb+srv://, tls=true for TLS); the database is the URI's path, default sagaflow", Sources: cli.EnvVars("SAGAFLOW_MONGO_URI")},
		&cli.StringFlag{Name: "admin-addr", Value: "127.0.0.1:8080", Usage: `admin API listen address ("off" disables it)`, Sources: cli.EnvVars("SAGAFLOW_ADMIN_ADDR")},
		&cli.StringFlag{Name: "amqp-url", Usage: "RabbitMQ URL (amqp:// or amqps:// for TLS); empty: the in-process transport", Sources: cli.EnvVars("SAGAFLOW_AMQP_URL")},
		&cli.IntFlag{Name: "partitions", Value: 16, Usage: "partitions per queue", Sources: cli.EnvVars("SAGAFLOW_PARTITIONS")},
		&cli.DurationFlag{Name: "idle-timeout", Value: 2 * time.Minute, Usage: "passivate an entity's actor after this long idle", Sources: cli.EnvVars("SAGAFLOW_IDLE_TIMEOUT")},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", Sources: cli.EnvVars("SAGAFLOW_LOG_LEVEL")},
	}
}

func engineOptions(cmd *cli.Command, stderr io.Writer) (engine.Options, error) {
	logger, err := newLogger(stderr, cmd.String("log-level"))
	if err != nil {
		return engine.Options{}, err
	}
	return engine.Options{
		Name:        cmd.String("name"),
		DataDir:     cmd.String("data-dir"),
		AdminAddr:   cmd.String("admin-addr"),
		Partitions:  cmd.Int("partitions"),
		IdleTimeout: cmd.Duration("idle-timeout"),
		Logger:      logger,
	}, nil
}

func serveCommand(setup Setup, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the engine daemon until SIGINT or SIGTERM",
		Flags: engineFlags(),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			opts, err := engineOptions(cmd, stderr)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(ctx)
			defer stop()
			if uri := cmd.String("mongo-uri"); uri != "" {
				st, err := mongostore.Open(ctx, uri, mongostore.WithLogger(opts.Logger))
				if err != nil {
					return fmt.Errorf("--mongo-uri: %w", err)
				}
				defer st.Close()
				opts.Store = st
			}
			if url := cmd.String("amqp-url"); url != "" {
				tr, err := rabbitmq.Dial(ctx, url, rabbitmq.WithName(opts.Name), rabbitmq.WithPartitions(opts.Partitions), rabbitmq.WithLogger(opts.Logger))
				if err != nil {
					return fmt.Errorf("--amqp-url: %w", err)
				}
				defer tr.Close()
				opts.Transport = tr
			}
			e := engine.New(opts)
			e.HandleAdmin(console.DefaultBasePath+"/", console.New(e, console.WithLogger(opts.Logger)))
			if setup != nil {
				setup(e)
			}
			done := make(chan error, 1)
			go func() { done <- e.Run(ctx) }()
			select {
			case err := <-done:
				return err
			case <-e.Ready():
			}
			fmt.Fprintf(stdout, "sagaflow engine %q running; admin API at %s\n", opts.Name, e.AdminURL())
			for _, wf := range e.Workflows() {
				fmt.Fprintf(stdout, "  workflow %s v%d\n", wf.Name(), wf.Version())
			}
			return <-done
		},
	}
}
