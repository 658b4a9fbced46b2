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
			historyCommand(stdout),
			signalCommand(stdout),
			retryCommand(stdout),
			deadLettersCommand(stdout, stderr),
			workflowsCommand(stdout),
			projectionsCommand(stdout, stderr),
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

// newLogger returns a logger at level ("debug", "info", "warn", "error")
// writing format ("text" or "json"; "" is text) to w.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level (SAGAFLOW_LOG_LEVEL): log level %q: want debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: l}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--log-format (SAGAFLOW_LOG_FORMAT): %q: want text or json", format)
}
