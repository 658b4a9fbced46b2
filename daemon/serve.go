package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/sagaflow/sagaflow/console"
	"github.com/sagaflow/sagaflow/engine"
	rmmongo "github.com/sagaflow/sagaflow/readmodel/mongo"
	mongostore "github.com/sagaflow/sagaflow/store/mongo"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
)

// ExitSecondSignal is the exit code when a second SIGINT or SIGTERM ends
// the daemon without waiting for the graceful stop.
const ExitSecondSignal = 130

func serveCommand(setup Setup, stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the engine daemon until SIGINT or SIGTERM",
		Description: "Every setting comes from, in this order: its flag, its SAGAFLOW_* environment variable\n" +
			"(shown with each flag), the YAML config file given by --config (keys are the flag names,\n" +
			"for example `admin-addr: 127.0.0.1:9090`), its default.\n\n" +
			"The first SIGINT or SIGTERM stops the daemon gracefully: the admin API answers 503 to new work,\n" +
			"consumers stop taking messages, in-flight steps finish (up to --shutdown-timeout), the outbox\n" +
			"is flushed and connections close. A second signal exits at once (nothing is lost: unacked\n" +
			"messages are delivered again).",
		Flags: engineFlags(),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if err := applyConfigFile(cmd); err != nil {
				return err
			}
			s, err := settingsFrom(cmd, stderr)
			if err != nil {
				return err
			}
			opts := s.opts
			ctx, stop := signalContext(ctx, opts.Logger)
			defer stop()
			if uri := s.mongoURI; uri != "" {
				st, err := mongostore.Open(ctx, uri, mongostore.WithLogger(opts.Logger))
				if err != nil {
					return fmt.Errorf("--mongo-uri: %w", err)
				}
				defer st.Close()
				opts.Store = st
				// Read models go to the same database.
				rm, err := rmmongo.Open(ctx, uri)
				if err != nil {
					return fmt.Errorf("--mongo-uri: read models: %w", err)
				}
				defer rm.Close()
				opts.ReadModels = rm
			}
			if url := s.amqpURL; url != "" {
				tr, err := rabbitmq.Dial(ctx, url, rabbitmq.WithName(opts.Name), rabbitmq.WithPartitions(opts.Partitions), rabbitmq.WithLogger(opts.Logger))
				if err != nil {
					return fmt.Errorf("--amqp-url: %w", err)
				}
				defer tr.Close()
				opts.Transport = tr
			}
			if s.pprofAddr != "" {
				stopPprof, err := servePprof(s.pprofAddr, opts.Logger)
				if err != nil {
					return err
				}
				defer stopPprof()
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
			if err := <-done; err != nil {
				return err
			}
			fmt.Fprintln(stdout, "sagaflow engine stopped")
			return nil
		},
	}
}

// signalContext is cancelled on the first SIGINT or SIGTERM; a second one
// exits the process at once with ExitSecondSignal.
func signalContext(ctx context.Context, logger *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			logger.Info("stopping gracefully; send the signal again to exit at once", "signal", sig.String())
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-sigs:
			logger.Warn("second signal: exiting now", "signal", sig.String())
			os.Exit(ExitSecondSignal)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}

// servePprof serves net/http/pprof on addr until the returned function is
// called.
func servePprof(addr string, logger *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof-addr: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("pprof server stopped", "err", err)
		}
	}()
	logger.Info("pprof listening", "addr", "http://"+ln.Addr().String()+"/debug/pprof/")
	return func() { _ = srv.Close() }, nil
}
