// Package daemon is the entry point of the sagaflow binary: `serve` runs an
// engine, the other subcommands are clients of its admin API, and `demo`
// runs the order saga end to end on the embedded default and exits.
//
// A program that ships its own workflows calls Main with a Setup that
// registers them; cmd/sagaflow calls it with the demo's:
//
//	func main() {
//		os.Exit(daemon.Main(context.Background(), os.Args, func(e *engine.Engine) {
//			e.Register(myWorkflow(), myAggregate())
//		}))
//	}
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v3"

	"github.com/sagaflow/sagaflow/engine"
)

// Setup registers a program's workflows, aggregates and message types.
type Setup func(e *engine.Engine)

// Main runs the sagaflow command line with args (args[0] is the program
// name) and returns the process exit code.
func Main(ctx context.Context, args []string, setup Setup) int {
	return MainIO(ctx, args, setup, os.Stdout, os.Stderr)
}

// MainIO is Main with the output streams given, for tests.
func MainIO(ctx context.Context, args []string, setup Setup, stdout, stderr io.Writer) int {
	cmd := &cli.Command{
		Name:      "sagaflow",
		Usage:     "saga orchestration engine for Go microservices",
		Writer:    stdout,
		ErrWriter: stderr,
		Commands: []*cli.Command{
			serveCommand(setup, stdout, stderr),
			demoCommand(setup, stdout, stderr),
			startCommand(stdout),
			getCommand(stdout),
			listCommand(stdout),
			cancelCommand(stdout),
		},
	}
	if err := cmd.Run(ctx, args); err != nil {
		fmt.Fprintln(stderr, "sagaflow:", err)
		var exit cli.ExitCoder
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		return 1
	}
	return 0
}

// signalContext is cancelled on SIGINT or SIGTERM.
func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
