package daemon

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/sagaflow/sagaflow/engine"
)

// circuitsCommand lists the engine's circuit breakers (GET /v1/circuits).
func circuitsCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "circuits",
		Usage: "list the circuit breakers of the remote services the engine sends commands to",
		Flags: clientFlags(jsonFlag()),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Args().Len() != 0 {
				return fmt.Errorf("circuits takes no arguments (got %d)", cmd.Args().Len())
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			circuits, err := c.Circuits(ctx)
			if err != nil {
				return err
			}
			if cmd.Bool("json") {
				return writeJSONTo(stdout, engine.CircuitsResponse{Circuits: circuits})
			}
			return printCircuits(stdout, circuits)
		},
	}
}

// printCircuits writes circuits as a table, one service a row.
func printCircuits(w io.Writer, circuits []engine.CircuitState) error {
	if len(circuits) == 0 {
		_, err := fmt.Fprintln(w, "no circuit breakers: the engine has sent no command to a remote service yet")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tFAILURES IN A ROW\tOPEN UNTIL\tOPENS AFTER\tOPEN FOR\tPROBES")
	for _, c := range circuits {
		until := "-"
		if !c.OpenUntil.IsZero() {
			until = c.OpenUntil.UTC().Format(time.RFC3339)
		}
		opensAfter := fmt.Sprint(c.Settings.Failures)
		if c.Settings.Failures < 0 {
			opensAfter = "never"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%v\t%d\n", c.Service, c.State, c.ConsecutiveFailures, until, opensAfter, c.Settings.OpenFor, c.Settings.Probes)
	}
	return tw.Flush()
}
