package daemon

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/sagaflow/sagaflow/client"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/transport"
)

// replayBatch is how many dead letters one replay or discard request of
// the CLI carries; progress is reported after each.
const replayBatch = 50

func deadLettersCommand(stdout, stderr io.Writer) *cli.Command {
	filterFlags := func(more ...cli.Flag) []cli.Flag {
		return clientFlags(append([]cli.Flag{
			&cli.StringFlag{Name: "queue", Usage: "keep letters taken from this queue"},
			&cli.StringFlag{Name: "type", Usage: "keep letters of this message type"},
		}, more...)...)
	}
	return &cli.Command{
		Name:    "dead-letters",
		Aliases: []string{"dlq"},
		Usage:   "list, inspect, replay or discard dead-lettered messages",
		Commands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list dead letters, oldest first",
				Flags: filterFlags(jsonFlag(), &cli.IntFlag{Name: "limit", Value: 100, Usage: "at most this many (1-10000)"}),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					c, err := newClient(cmd)
					if err != nil {
						return err
					}
					dls, err := c.DeadLetters(ctx, engine.DeadLetterFilter{Queue: cmd.String("queue"), Type: cmd.String("type"), Limit: int(cmd.Int("limit"))})
					if err != nil {
						return err
					}
					if cmd.Bool("json") {
						return writeJSONTo(stdout, engine.DeadLettersResponse{DeadLetters: dls})
					}
					if err := writeTable(stdout, "MESSAGE ID\tQUEUE\tTYPE\tKEY\tATTEMPTS\tAT\tREASON", dls, func(dl transport.DeadLetter) []string {
						return []string{dl.Message.ID, dl.Queue, dl.Message.Type, dl.Message.Key, fmt.Sprint(dl.Attempts), dl.At.Format(time.RFC3339), oneLine(dl.Reason, 80)}
					}); err != nil {
						return err
					}
					fmt.Fprintf(stdout, "%d dead letters\n", len(dls))
					return nil
				},
			},
			{
				Name:      "show",
				Usage:     "show one dead letter with its whole message",
				ArgsUsage: "MESSAGE_ID",
				Flags:     clientFlags(jsonFlag()),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					id, err := oneArg(cmd, "the message ID")
					if err != nil {
						return err
					}
					c, err := newClient(cmd)
					if err != nil {
						return err
					}
					dl, err := c.DeadLetter(ctx, id)
					if err != nil {
						return err
					}
					if cmd.Bool("json") {
						return writeJSONTo(stdout, dl)
					}
					m := dl.Message
					tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
					for _, row := range [][2]string{
						{"message", m.ID}, {"queue", dl.Queue}, {"reason", dl.Reason}, {"attempts", fmt.Sprint(dl.Attempts)},
						{"dead-lettered", dl.At.Format(time.RFC3339Nano)}, {"kind", string(m.Kind)}, {"type", m.Type},
						{"source", m.Source}, {"destination", m.Destination}, {"key", m.Key}, {"saga", m.SagaID},
						{"correlation", m.CorrelationID}, {"causation", m.CausationID}, {"occurred", m.OccurredAt.Format(time.RFC3339Nano)},
					} {
						fmt.Fprintf(tw, "%s:\t%s\n", row[0], row[1])
					}
					if err := tw.Flush(); err != nil {
						return err
					}
					fmt.Fprintf(stdout, "payload:\n%s\n", m.Payload)
					return nil
				},
			},
			settleCommand("replay", "put dead letters back on their queue to be handled again", stdout, stderr, filterFlags),
			settleCommand("discard", "delete dead letters for good", stdout, stderr, filterFlags),
		},
	}
}

// settleCommand is `dead-letters replay` or `dead-letters discard`: of the
// IDs given, or of every letter matching the filters with --all, in
// batches, with progress on stderr.
func settleCommand(op, usage string, stdout, stderr io.Writer, filterFlags func(...cli.Flag) []cli.Flag) *cli.Command {
	return &cli.Command{
		Name:      op,
		Usage:     usage,
		ArgsUsage: "[MESSAGE_ID...]",
		Flags: filterFlags(jsonFlag(),
			&cli.BoolFlag{Name: "all", Usage: "every dead letter that matches --queue and --type (up to 10,000)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress lines"}),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			ids := cmd.Args().Slice()
			switch {
			case cmd.Bool("all") && len(ids) > 0:
				return fmt.Errorf("%s: give message IDs or --all, not both", op)
			case cmd.Bool("all"):
				dls, err := c.DeadLetters(ctx, engine.DeadLetterFilter{Queue: cmd.String("queue"), Type: cmd.String("type"), Limit: 10_000})
				if err != nil {
					return err
				}
				for _, dl := range dls {
					ids = append(ids, dl.Message.ID)
				}
			case len(ids) == 0:
				return fmt.Errorf("%s: give the message IDs of the dead letters, or --all", op)
			case cmd.IsSet("queue") || cmd.IsSet("type"):
				return fmt.Errorf("%s: --queue and --type select letters for --all only", op)
			}
			progress := stderr
			if cmd.Bool("quiet") {
				progress = io.Discard
			}
			total, err := settleInBatches(ctx, c, op, ids, progress)
			if cmd.Bool("json") {
				if jerr := writeJSONTo(stdout, total); jerr != nil && err == nil {
					err = jerr
				}
			} else {
				fmt.Fprintf(stdout, "%s: %d done, %d not found\n", op, len(total.Done), len(total.Missing))
			}
			return err
		},
	}
}

// settleInBatches replays or discards ids replayBatch at a time and writes
// a progress line after each batch.
func settleInBatches(ctx context.Context, c *client.Client, op string, ids []string, progress io.Writer) (engine.DeadLetterResult, error) {
	total := engine.DeadLetterResult{Done: []string{}}
	settle := c.ReplayDeadLetters
	if op == "discard" {
		settle = c.DiscardDeadLetters
	}
	start := time.Now()
	for i := 0; i < len(ids); i += replayBatch {
		batch := ids[i:min(i+replayBatch, len(ids))]
		res, err := settle(ctx, batch)
		total.Done = append(total.Done, res.Done...)
		total.Missing = append(total.Missing, res.Missing...)
		if err != nil {
			return total, fmt.Errorf("%s after %d of %d: %w", op, i, len(ids), err)
		}
		fmt.Fprintf(progress, "%s: %d/%d (%d not found) %s\n", op, i+len(batch), len(ids), len(total.Missing), time.Since(start).Round(time.Millisecond))
	}
	return total, nil
}
