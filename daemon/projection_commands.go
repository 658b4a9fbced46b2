package daemon

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/sagaflow/sagaflow/client"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/projection"
)

// rebuildPoll is how often `projections rebuild` asks for progress.
const rebuildPoll = 200 * time.Millisecond

func projectionsCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "projections",
		Usage: "list projections, show one's status, rebuild one's read model",
		Commands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list the projections with their state and counters",
				Flags: clientFlags(jsonFlag()),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					c, err := newClient(cmd)
					if err != nil {
						return err
					}
					ps, err := c.Projections(ctx)
					if err != nil {
						return err
					}
					if cmd.Bool("json") {
						return writeJSONTo(stdout, engine.ProjectionsResponse{Projections: ps})
					}
					if err := writeTable(stdout, "NAME\tSTATE\tAPPLIED\tSKIPPED\tDUPLICATES\tHELD\tPARKED\tLAST REBUILD", ps, func(p projection.Status) []string {
						return []string{p.Name, string(p.State), fmt.Sprint(p.Applied), fmt.Sprint(p.Skipped), fmt.Sprint(p.Duplicates), fmt.Sprint(p.Held), fmt.Sprint(p.Parked), rebuildSummary(p.Rebuild)}
					}); err != nil {
						return err
					}
					fmt.Fprintf(stdout, "%d projections\n", len(ps))
					return nil
				},
			},
			{
				Name:      "status",
				Usage:     "show one projection's status",
				ArgsUsage: "NAME",
				Flags:     clientFlags(jsonFlag()),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					name, err := oneArg(cmd, "the projection's name")
					if err != nil {
						return err
					}
					c, err := newClient(cmd)
					if err != nil {
						return err
					}
					st, err := c.Projection(ctx, name)
					if err != nil {
						return err
					}
					if cmd.Bool("json") {
						return writeJSONTo(stdout, st)
					}
					fmt.Fprintf(stdout, "projection  %s\nstate       %s\nqueue       %s\nevents      %v\napplied     %d\nskipped     %d\nduplicates  %d\nheld        %d\nparked      %d\nrebuild     %s\n",
						st.Name, st.State, st.Queue, st.Events, st.Applied, st.Skipped, st.Duplicates, st.Held, st.Parked, rebuildSummary(st.Rebuild))
					return nil
				},
			},
			{
				Name:      "rebuild",
				Usage:     "drop a projection's read model and rebuild it from the event store, showing progress on stderr",
				ArgsUsage: "NAME",
				Flags: clientFlags(jsonFlag(),
					&cli.BoolFlag{Name: "no-wait", Usage: "start the rebuild and return"},
					&cli.DurationFlag{Name: "timeout", Value: time.Hour, Usage: "give up waiting after this long (the rebuild goes on)"}),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					name, err := oneArg(cmd, "the projection's name")
					if err != nil {
						return err
					}
					c, err := newClient(cmd)
					if err != nil {
						return err
					}
					st, err := c.Rebuild(ctx, name)
					if err != nil {
						return err
					}
					if !cmd.Bool("no-wait") {
						if st, err = waitRebuild(ctx, c, name, cmd.Duration("timeout"), stderr); err != nil {
							return err
						}
					}
					if cmd.Bool("json") {
						return writeJSONTo(stdout, st)
					}
					fmt.Fprintf(stdout, "%s: %s\n", name, rebuildSummary(st.Rebuild))
					if rb := st.Rebuild; rb != nil && rb.Error != "" {
						return cli.Exit(fmt.Sprintf("rebuild of %s failed: %s", name, rb.Error), 1)
					}
					return nil
				},
			},
		},
	}
}

// waitRebuild polls the projection until its rebuild ends, printing the
// progress to stderr whenever it moves.
func waitRebuild(ctx context.Context, c *client.Client, name string, timeout time.Duration, stderr io.Writer) (projection.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(rebuildPoll)
	defer t.Stop()
	last := -1
	for {
		st, err := c.Projection(ctx, name)
		if err != nil {
			return st, err
		}
		rb := st.Rebuild
		if rb == nil {
			return st, fmt.Errorf("projection %s reports no rebuild", name)
		}
		if rb.Done != last || !rb.Running {
			last = rb.Done
			fmt.Fprintf(stderr, "rebuilding %s: %d/%d streams, %d events\n", name, rb.Done, rb.Total, rb.Events)
		}
		if !rb.Running {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("rebuild of %s still running after %v: %w", name, timeout, ctx.Err())
		case <-t.C:
		}
	}
}

func rebuildSummary(rb *projection.RebuildStatus) string {
	switch {
	case rb == nil:
		return "never"
	case rb.Running:
		return fmt.Sprintf("running, %d/%d streams", rb.Done, rb.Total)
	case rb.Error != "":
		return fmt.Sprintf("failed after %d/%d streams: %s", rb.Done, rb.Total, oneLine(rb.Error, 80))
	default:
		return fmt.Sprintf("done %s: %d streams, %d events in %v", rb.FinishedAt.Format(time.RFC3339), rb.Total, rb.Events, rb.FinishedAt.Sub(rb.StartedAt).Round(time.Millisecond))
	}
}
