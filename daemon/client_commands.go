package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/sagaflow/sagaflow/client"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/workflows"
)

// clientFlags are the flags of every admin API client command.
func clientFlags(more ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "addr", Value: "127.0.0.1:8080", Usage: "admin API address of the engine", Sources: cli.EnvVars("SAGAFLOW_ADMIN_ADDR")},
		&cli.StringFlag{Name: "admin-token-file", Usage: "file holding the admin API's bearer token (or put the token in " + AdminTokenEnv + ")", Sources: cli.EnvVars("SAGAFLOW_ADMIN_TOKEN_FILE"), TakesFile: true},
		&cli.DurationFlag{Name: "request-timeout", Value: 30 * time.Second, Usage: "bound on each admin API request"},
	}, more...)
}

// newClient returns the admin API client the command's flags describe.
func newClient(cmd *cli.Command) (*client.Client, error) {
	token := strings.TrimSpace(os.Getenv(AdminTokenEnv))
	if path := cmd.String("admin-token-file"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--admin-token-file: %w", err)
		}
		token = strings.TrimSpace(string(data))
	}
	return client.New(cmd.String("addr"), client.WithToken(token), client.WithTimeout(cmd.Duration("request-timeout"))), nil
}

// oneArg returns the command's only argument, or an error naming it.
func oneArg(cmd *cli.Command, what string) (string, error) {
	if cmd.Args().Len() != 1 {
		return "", fmt.Errorf("%s takes one argument, %s (got %d)", cmd.Name, what, cmd.Args().Len())
	}
	return cmd.Args().First(), nil
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"}
}

func startCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "start",
		Usage:     "start a saga and (with --wait) print its outcome",
		ArgsUsage: "WORKFLOW",
		Flags: clientFlags(
			jsonFlag(),
			&cli.StringFlag{Name: "input", Value: "{}", Usage: "the workflow's input as JSON"},
			&cli.StringFlag{Name: "id", Usage: "saga ID (an idempotency key; default: a new one)"},
			&cli.StringFlag{Name: "idempotency-key", Usage: "start at most one saga of this workflow for this key"},
			&cli.StringFlag{Name: "correlation-id", Usage: "business correlation ID"},
			&cli.BoolFlag{Name: "wait", Value: true, Usage: "wait for the saga to finish"},
			&cli.DurationFlag{Name: "timeout", Value: time.Minute, Usage: "how long --wait waits"},
		),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Args().Len() != 1 {
				return fmt.Errorf("start takes one argument, the workflow name (got %d)", cmd.Args().Len())
			}
			input := json.RawMessage(cmd.String("input"))
			if !json.Valid(input) {
				return fmt.Errorf("--input is not valid JSON: %s", cmd.String("input"))
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			id, err := c.Start(ctx, engine.StartRequest{Workflow: cmd.Args().First(), Input: input, ID: cmd.String("id"),
				IdempotencyKey: cmd.String("idempotency-key"), CorrelationID: cmd.String("correlation-id")})
			if err != nil {
				return err
			}
			if !cmd.Bool("wait") {
				fmt.Fprintln(stdout, id)
				return nil
			}
			wctx, cancel := context.WithTimeout(ctx, cmd.Duration("timeout"))
			defer cancel()
			s, err := c.Wait(wctx, id)
			if err != nil {
				return err
			}
			return printSaga(stdout, s, cmd.Bool("json"))
		},
	}
}

func getCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "show a saga and its history",
		ArgsUsage: "SAGA_ID",
		Flags:     clientFlags(jsonFlag()),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Args().Len() != 1 {
				return fmt.Errorf("get takes one argument, the saga ID (got %d)", cmd.Args().Len())
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			s, err := c.Get(ctx, cmd.Args().First())
			if err != nil {
				return err
			}
			return printSaga(stdout, s, cmd.Bool("json"))
		},
	}
}

func listCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list sagas",
		Flags: clientFlags(
			jsonFlag(),
			&cli.StringFlag{Name: "status", Usage: "comma-separated statuses to keep (running, compensating, completed, compensated, cancelled, needs_attention)"},
			&cli.StringFlag{Name: "workflow", Aliases: []string{"type"}, Usage: "workflow (saga type) to keep"},
			&cli.StringFlag{Name: "correlation-id", Usage: "correlation ID to keep"},
			&cli.TimestampFlag{Name: "created-from", Usage: "keep sagas created at or after this RFC 3339 time", Config: cli.TimestampConfig{Layouts: []string{time.RFC3339}}},
			&cli.TimestampFlag{Name: "created-to", Usage: "keep sagas created before this RFC 3339 time", Config: cli.TimestampConfig{Layouts: []string{time.RFC3339}}},
			&cli.StringFlag{Name: "after", Usage: "cursor from the previous page"},
			&cli.IntFlag{Name: "limit", Value: 50, Usage: "rows per page (1-1000)"},
		),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			req := engine.ListRequest{Workflow: cmd.String("workflow"), CorrelationID: cmd.String("correlation-id"),
				CreatedFrom: cmd.Timestamp("created-from"), CreatedTo: cmd.Timestamp("created-to"),
				After: cmd.String("after"), Limit: int(cmd.Int("limit"))}
			for _, s := range strings.Split(cmd.String("status"), ",") {
				if s = strings.TrimSpace(s); s != "" {
					req.Status = append(req.Status, workflows.Status(s))
				}
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			resp, err := c.List(ctx, req)
			if err != nil {
				return err
			}
			if cmd.Bool("json") {
				return writeJSONTo(stdout, resp)
			}
			if err := writeTable(stdout, "ID\tWORKFLOW\tSTATUS\tCORRELATION\tCREATED\tUPDATED", resp.Sagas, func(s engine.SagaSummary) []string {
				return []string{s.ID, s.Workflow, string(s.Status), s.CorrelationID, s.CreatedAt.Format(time.RFC3339), s.UpdatedAt.Format(time.RFC3339)}
			}); err != nil {
				return err
			}
			if resp.Next != "" {
				fmt.Fprintf(stdout, "more: --after %s\n", resp.Next)
			}
			return nil
		},
	}
}

func cancelCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:      "cancel",
		Usage:     "cancel a saga: stop it and compensate its completed steps",
		ArgsUsage: "SAGA_ID",
		Flags:     clientFlags(jsonFlag(), &cli.StringFlag{Name: "reason", Usage: "why, for the history"}),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Args().Len() != 1 {
				return fmt.Errorf("cancel takes one argument, the saga ID (got %d)", cmd.Args().Len())
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			if err := c.Cancel(ctx, cmd.Args().First(), cmd.String("reason")); err != nil {
				return err
			}
			return printDone(stdout, cmd, "cancelling", cmd.Args().First())
		},
	}
}

// printDone reports that status was reached for saga id: a line, or
// {"id", "status"} with --json.
func printDone(w io.Writer, cmd *cli.Command, status, id string) error {
	if cmd.Bool("json") {
		return writeJSONTo(w, map[string]string{"id": id, "status": status})
	}
	_, err := fmt.Fprintln(w, status, id)
	return err
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printSaga prints a saga's outcome and history as a human table, or JSON.
func printSaga(w io.Writer, s engine.Saga, asJSON bool) error {
	if asJSON {
		return writeJSONTo(w, s)
	}
	fmt.Fprintf(w, "saga %s (%s v%d): %s\n", s.ID, s.Workflow, s.Version, s.Status)
	if s.Error != "" {
		fmt.Fprintf(w, "  reason: %s\n", s.Error)
	}
	return printHistory(w, s.CreatedAt, s.History)
}

// printHistory prints records as a table, times relative to start.
func printHistory(w io.Writer, start time.Time, history []workflows.Record) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TIME\tEVENT\tSTEP\tATTEMPT\tDETAIL")
	for _, r := range history {
		attempt := ""
		if r.Attempt > 0 {
			attempt = fmt.Sprint(r.Attempt)
		}
		fmt.Fprintf(tw, "  +%s\t%s\t%s\t%s\t%s\n", r.At.Sub(start).Round(time.Millisecond), r.Event, r.Step, attempt, r.Detail)
	}
	return tw.Flush()
}
