package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v3"

	"github.com/sagaflow/sagaflow/engine"
)

func historyCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "history",
		Usage:     "show a saga's history: every step, attempt, reply, compensation, signal, with times",
		ArgsUsage: "SAGA_ID",
		Flags:     clientFlags(jsonFlag()),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			id, err := oneArg(cmd, "the saga ID")
			if err != nil {
				return err
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			h, err := c.History(ctx, id)
			if err != nil {
				return err
			}
			if cmd.Bool("json") {
				return writeJSONTo(stdout, engine.HistoryResponse{ID: id, History: h})
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tEVENT\tSTEP\tATTEMPT\tMESSAGE\tDETAIL")
			for _, r := range h {
				attempt := ""
				if r.Attempt > 0 {
					attempt = fmt.Sprint(r.Attempt)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.At.Format("2006-01-02T15:04:05.000Z07:00"), r.Event, r.Step, attempt, r.MessageID, r.Detail)
			}
			return tw.Flush()
		},
	}
}

func signalCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "signal",
		Usage:     "send a signal to a saga (recorded in its history)",
		ArgsUsage: "SAGA_ID SIGNAL_NAME",
		Flags:     clientFlags(jsonFlag(), &cli.StringFlag{Name: "payload", Usage: "the signal's data as JSON"}),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Args().Len() != 2 {
				return fmt.Errorf("signal takes two arguments, the saga ID and the signal name (got %d)", cmd.Args().Len())
			}
			req := engine.SignalRequest{Name: cmd.Args().Get(1)}
			if p := cmd.String("payload"); p != "" {
				if !json.Valid([]byte(p)) {
					return fmt.Errorf("--payload is not valid JSON: %s", p)
				}
				req.Payload = json.RawMessage(p)
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			if err := c.Signal(ctx, cmd.Args().First(), req); err != nil {
				return err
			}
			return printDone(stdout, cmd, "signalled", cmd.Args().First())
		},
	}
}

func retryCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "retry",
		Usage:     "make a saga that needs attention retry its failed compensation and go on compensating",
		ArgsUsage: "SAGA_ID",
		Flags:     clientFlags(jsonFlag(), &cli.StringFlag{Name: "reason", Usage: "why, for the history"}),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			id, err := oneArg(cmd, "the saga ID")
			if err != nil {
				return err
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			if err := c.Retry(ctx, id, cmd.String("reason")); err != nil {
				return err
			}
			return printDone(stdout, cmd, "retrying", id)
		},
	}
}

func workflowsCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "workflows",
		Usage: "list the engine's workflows, or show one with its Mermaid diagram",
		Commands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list workflows and their steps",
				Flags: clientFlags(jsonFlag()),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					c, err := newClient(cmd)
					if err != nil {
						return err
					}
					infos, err := c.Workflows(ctx)
					if err != nil {
						return err
					}
					if cmd.Bool("json") {
						return writeJSONTo(stdout, engine.WorkflowsResponse{Workflows: infos})
					}
					tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tVERSION\tSTEPS")
					for _, wf := range infos {
						var steps []string
						for _, s := range wf.Steps {
							steps = append(steps, s.Name)
						}
						fmt.Fprintf(tw, "%s\t%d\t%s\n", wf.Name, wf.Version, strings.Join(steps, " -> "))
					}
					return tw.Flush()
				},
			},
			{
				Name:      "show",
				Usage:     "show a workflow's steps and its Mermaid diagram",
				ArgsUsage: "NAME",
				Flags: clientFlags(jsonFlag(),
					&cli.IntFlag{Name: "version", Usage: "version (default: the latest)"},
					&cli.BoolFlag{Name: "mermaid", Usage: "print only the Mermaid diagram"}),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					name, err := oneArg(cmd, "the workflow name")
					if err != nil {
						return err
					}
					c, err := newClient(cmd)
					if err != nil {
						return err
					}
					wf, err := c.Workflow(ctx, name, int(cmd.Int("version")))
					if err != nil {
						return err
					}
					switch {
					case cmd.Bool("json"):
						return writeJSONTo(stdout, wf)
					case cmd.Bool("mermaid"):
						_, err := fmt.Fprintln(stdout, wf.Mermaid)
						return err
					}
					fmt.Fprintf(stdout, "workflow %s v%d\n", wf.Name, wf.Version)
					tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "  STEP\tKIND\tSERVICE\tCOMPENSABLE\tTIMEOUT\tATTEMPTS")
					for _, s := range wf.Steps {
						fmt.Fprintf(tw, "  %s\t%s\t%s\t%v\t%v\t%d\n", s.Name, s.Kind, s.Service, s.Compensable, s.Timeout, s.Retry.MaxAttempts)
					}
					if err := tw.Flush(); err != nil {
						return err
					}
					fmt.Fprintf(stdout, "\n%s\n", wf.Mermaid)
					return nil
				},
			},
		},
	}
}

// oneLine shortens s to one line of at most n characters.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}
