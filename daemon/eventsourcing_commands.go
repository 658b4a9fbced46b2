package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/sagaflow/sagaflow/engine"
)

// aggregateCommand is `sagaflow aggregate get SERVICE ID [--version N | --at T]`.
func aggregateCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "aggregate",
		Usage: "inspect event-sourced aggregates",
		Commands: []*cli.Command{{
			Name:      "get",
			Usage:     "show an aggregate's state, now or at a past version or time",
			ArgsUsage: "SERVICE ID",
			Flags: clientFlags(jsonFlag(),
				&cli.Uint64Flag{Name: "version", Usage: "the state after this commit version"},
				&cli.StringFlag{Name: "at", Usage: "the state at this RFC 3339 time (after the last commit at or before it)"},
			),
			Action: func(ctx context.Context, cmd *cli.Command) error {
				if cmd.Args().Len() != 2 {
					return fmt.Errorf("aggregate get takes two arguments, the service and the aggregate ID (got %d)", cmd.Args().Len())
				}
				var at engine.AggregateAt
				at.Version = cmd.Uint64("version")
				if s := cmd.String("at"); s != "" {
					t, err := time.Parse(time.RFC3339Nano, s)
					if err != nil {
						return fmt.Errorf("--at %q: want an RFC 3339 time such as 2026-03-01T12:00:00Z", s)
					}
					at.Time = t
				}
				if cmd.IsSet("version") && at.Version == 0 {
					return errors.New("--version: want a commit version, a whole number from 1")
				}
				if at.Version != 0 && !at.Time.IsZero() {
					return errors.New("give --version or --at, not both")
				}
				c, err := newClient(cmd)
				if err != nil {
					return err
				}
				v, err := c.AggregateState(ctx, cmd.Args().Get(0), cmd.Args().Get(1), at)
				if err != nil {
					return err
				}
				if cmd.Bool("json") {
					return writeJSONTo(stdout, v)
				}
				return printAggregate(stdout, v)
			},
		}},
	}
}

// printAggregate prints a view as a summary line and a table of the
// state's top-level fields (values as compact JSON).
func printAggregate(w io.Writer, v engine.AggregateView) error {
	fmt.Fprintf(w, "aggregate %s %s (service %s): version %d of %d, committed %s\n",
		v.Type, v.ID, v.Service, v.Version, v.Latest, v.At.Format(time.RFC3339Nano))
	raw, _ := v.State.(json.RawMessage)
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		_, err := fmt.Fprintf(w, "  state: %s\n", raw)
		return err
	}
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  FIELD\tVALUE")
	for _, n := range names {
		var buf bytes.Buffer
		if err := json.Compact(&buf, fields[n]); err != nil {
			buf.Reset()
			buf.Write(fields[n])
		}
		fmt.Fprintf(tw, "  %s\t%s\n", n, oneLine(buf.String(), 120))
	}
	return tw.Flush()
}

// subjectCommand is `sagaflow subject forget ID`.
func subjectCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "subject",
		Usage: "manage data subjects (crypto-shredding)",
		Commands: []*cli.Command{{
			Name:      "forget",
			Usage:     "delete a subject's key: its personal fields read as redacted from then on",
			ArgsUsage: "SUBJECT",
			Flags:     clientFlags(jsonFlag()),
			Action: func(ctx context.Context, cmd *cli.Command) error {
				subject, err := oneArg(cmd, "the subject")
				if err != nil {
					return err
				}
				c, err := newClient(cmd)
				if err != nil {
					return err
				}
				resp, err := c.Forget(ctx, subject)
				if err != nil {
					return err
				}
				if cmd.Bool("json") {
					return writeJSONTo(stdout, resp)
				}
				_, err = fmt.Fprintln(stdout, "forgotten", resp.Subject)
				return err
			},
		}},
	}
}
