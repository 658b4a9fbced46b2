package campaigns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/classification"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/customers"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/inbox"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/mailer"
	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/readmodel"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/workflows"
)

// WorkflowName is the campaign saga's name.
const WorkflowName = "campaigns.Run"

// InboxQueue is the queue of the other services' events the campaign
// service keeps.
const InboxQueue = "campaigns.inbox"

// Lanes is how many batches of a campaign are sent at once: the bound on
// the mailer's parallelism per campaign (each lane is one SendBatch; the
// mailer sends a batch with its own bounded worker pool).
const Lanes = 4

// Input starts a campaign. The saga's ID should be the campaign's ID.
type Input struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Subject string `json:"subject"`
	Body    string `json:"body"`
	Budget  int    `json:"budget"`
}

// RunState is the saga's state.
type RunState struct {
	Input
	Audience []mailer.Recipient   `json:"audience,omitempty"`
	Results  []mailer.BatchResult `json:"results,omitempty"`
}

// Config configures the campaign saga.
type Config struct {
	// ReadModels is the store the campaign projections write (required:
	// the audience is selected from it).
	ReadModels readmodel.Store
	// SendRetry is each lane's retry policy (default: 40 attempts, 200ms
	// doubling to 2s: long enough to ride out a mailer outage; the
	// breaker's pauses do not use attempts up).
	SendRetry workflows.RetryPolicy
	// SendTimeout bounds the wait for a lane's reply (default 2m).
	SendTimeout time.Duration
	// StepTimeout bounds the other steps' waits (default 30s).
	StepTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.SendRetry.MaxAttempts == 0 {
		c.SendRetry = workflows.RetryPolicy{MaxAttempts: 40, InitialInterval: 200 * time.Millisecond, MaxInterval: 2 * time.Second, Multiplier: 2, Jitter: 0.2}
	}
	if c.SendTimeout == 0 {
		c.SendTimeout = 2 * time.Minute
	}
	if c.StepTimeout == 0 {
		c.StepTimeout = 30 * time.Second
	}
	return c
}

// SelectAudience returns the recipients of a campaign from members: the
// eligible ones (Member.Eligible), by customer ID, at most budget.
func SelectAudience(members []Member, budget int) []mailer.Recipient {
	var out []mailer.Recipient
	for _, m := range members {
		if m.Eligible() {
			out = append(out, mailer.Recipient{Customer: m.ID, Email: m.Email})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Customer < out[j].Customer })
	if len(out) > budget {
		out = out[:budget]
	}
	return out
}

// Lane returns the recipients of lane i of n: every n-th from i.
func Lane(all []mailer.Recipient, i, n int) []mailer.Recipient {
	var out []mailer.Recipient
	for j := i; j < len(all); j += n {
		out = append(out, all[j])
	}
	return out
}

// Workflow returns the campaign saga.
func Workflow(cfg Config) *workflows.Definition[Input, RunState] {
	cfg = cfg.withDefaults()
	reader := NewReader(cfg.ReadModels)
	campaignCmd := func(name string, body func(s *RunState) any, compensate func(s *RunState) any) workflows.CommandStep[RunState] {
		st := workflows.CommandStep[RunState]{
			Service: Service,
			Command: func(s *RunState) (workflows.Cmd, error) { return workflows.Cmd{Key: s.ID, Body: body(s)}, nil },
			Timeout: cfg.StepTimeout,
		}
		if compensate != nil {
			st.Compensate = func(s *RunState) (workflows.Cmd, error) { return workflows.Cmd{Key: s.ID, Body: compensate(s)}, nil }
		}
		return st
	}
	lanes := make([]workflows.Branch[RunState], Lanes)
	for i := range lanes {
		lanes[i] = workflows.Branch[RunState]{
			Name: fmt.Sprintf("send-lane-%d", i),
			Step: workflows.CommandStep[RunState]{
				Service: mailer.Service,
				Command: func(s *RunState) (workflows.Cmd, error) {
					return workflows.Cmd{Key: fmt.Sprintf("%s/%d", s.ID, i), Body: mailer.SendBatch{
						Campaign: s.ID, Lane: i, Subject: s.Subject, Body: s.Body, Recipients: Lane(s.Audience, i, Lanes),
					}}, nil
				},
				OnReply: workflows.Reply(func(s *RunState, r *mailer.BatchResult) error {
					if r.Campaign != s.ID || r.Lane != i {
						return fmt.Errorf("lane %d of %s: reply is for lane %d of %s", i, s.ID, r.Lane, r.Campaign)
					}
					if len(s.Results) != Lanes {
						s.Results = make([]mailer.BatchResult, Lanes)
					}
					s.Results[i] = *r
					return nil
				}),
				Retry:   cfg.SendRetry,
				Timeout: cfg.SendTimeout,
			},
		}
	}
	return workflows.New(WorkflowName, 1, func(in Input) (RunState, error) {
		var errs []error
		if strings.TrimSpace(in.ID) == "" {
			errs = append(errs, errors.New(`"id" is required`))
		}
		if in.Budget <= 0 {
			errs = append(errs, fmt.Errorf(`"budget" %d: must be positive`, in.Budget))
		}
		if strings.TrimSpace(in.Subject) == "" {
			errs = append(errs, errors.New(`"subject" is required`))
		}
		return RunState{Input: in}, errors.Join(errs...)
	}).
		Send("reserve-budget", campaignCmd("reserve-budget",
			func(s *RunState) any { return ReserveBudget{Name: s.Name, Subject: s.Subject, Budget: s.Budget} },
			func(s *RunState) any { return ReleaseBudget{Reason: "campaign stopped before it finished"} })).
		Do("select-audience", workflows.LocalStep[RunState]{
			Run: func(ctx context.Context, s *RunState) error {
				members, err := reader.Members(ctx)
				if err != nil {
					return err
				}
				s.Audience = SelectAudience(members, s.Budget)
				return nil
			},
		}).
		Send("record-audience", campaignCmd("record-audience", func(s *RunState) any {
			ids := make([]string, len(s.Audience))
			for i, r := range s.Audience {
				ids[i] = r.Customer
			}
			return RecordAudience{Recipients: ids}
		}, nil)).
		Parallel("send", workflows.All, lanes...).
		Send("record-outcomes", campaignCmd("record-outcomes", func(s *RunState) any { return RecordOutcomes{Outcomes: outcomes(s.Results)} }, nil)).
		Send("finish", campaignCmd("finish", func(*RunState) any { return Finish{} }, nil))
}

func outcomes(results []mailer.BatchResult) []Outcome {
	var out []Outcome
	for _, r := range results {
		for _, c := range r.Sent {
			out = append(out, Outcome{Customer: c, Status: Sent})
		}
		for _, c := range r.Bounced {
			out = append(out, Outcome{Customer: c, Status: Bounced})
		}
		for _, sk := range r.Skipped {
			out = append(out, Outcome{Customer: sk.Customer, Status: Skipped, Reason: sk.Reason})
		}
	}
	return out
}

// Messages returns the registrations of the campaign service's types,
// including the public events it consumes and the mailer's contract.
func Messages() []any {
	return append(append(customers.PublicMessages(), engine.Message[classification.CustomerClassificationUpdated]("classification.public.CustomerClassificationUpdated.v1")),
		engine.Message[NoteRegistered]("campaigns.NoteRegistered.v1"),
		engine.Message[NotePermission]("campaigns.NotePermission.v1"),
		engine.Message[NoteClass]("campaigns.NoteClass.v1"),
		engine.Message[MemberChanged]("campaigns.MemberChanged.v1"),
		engine.Message[AudienceMemberChanged]("campaigns.public.AudienceMemberChanged.v1"),
		engine.Message[ReserveBudget]("campaigns.ReserveBudget.v1"),
		engine.Message[ReleaseBudget]("campaigns.ReleaseBudget.v1"),
		engine.Message[RecordAudience]("campaigns.RecordAudience.v1"),
		engine.Message[RecordOutcomes]("campaigns.RecordOutcomes.v1"),
		engine.Message[RecordOpened]("campaigns.RecordOpened.v1"),
		engine.Message[Finish]("campaigns.Finish.v1"),
		engine.Message[BudgetReserved]("campaigns.BudgetReserved.v1"),
		engine.Message[AudienceSelected]("campaigns.AudienceSelected.v1"),
		engine.Message[MailRecorded]("campaigns.MailRecorded.v1"),
		engine.Message[MailOpened]("campaigns.MailOpened.v1"),
		engine.Message[CampaignFinished]("campaigns.CampaignFinished.v1"),
		engine.Message[CampaignCancelled]("campaigns.CampaignCancelled.v1"),
		engine.Message[CampaignOpened]("campaigns.public.CampaignOpened.v1"),
		engine.Message[CampaignAudienceSelected]("campaigns.public.CampaignAudienceSelected.v1"),
		engine.Message[CampaignMailRecorded]("campaigns.public.CampaignMailRecorded.v1"),
		engine.Message[CampaignMailOpened]("campaigns.public.CampaignMailOpened.v1"),
		engine.Message[CampaignClosed]("campaigns.public.CampaignClosed.v1"),
		engine.Message[CampaignCancelledPublic]("campaigns.public.CampaignCancelled.v1"),
		engine.Message[mailer.SendBatch]("mailer.SendBatch.v1"),
		engine.Message[mailer.BatchResult]("mailer.BatchResult.v1"),
	)
}

// Setup registers the campaign service on e: its messages, the Audience
// and Campaign aggregates, both projections and the saga. Pass the same
// read-model store as engine.Options.ReadModels in cfg.
func Setup(e *engine.Engine, cfg Config) *engine.Engine {
	return e.Register(Messages()...).
		Register(Audience(), Campaign(), AudienceProjection(), ReportsProjection(), Workflow(cfg))
}

// Inbox returns the subscription that keeps the customer and
// classification services' public events in the Audience streams. send
// is usually the engine's Send.
func Inbox(tr transport.Transport, reg *message.Registry, send inbox.Sender, logger *slog.Logger) (*inbox.Inbox, error) {
	var names []string
	for _, v := range []any{&customers.CustomerRegistered{}, &customers.EmailPermissionGranted{}, &customers.EmailPermissionRevoked{}, &classification.CustomerClassificationUpdated{}} {
		n, err := reg.TypeNameOf(v)
		if err != nil {
			return nil, fmt.Errorf("campaigns inbox: %w", err)
		}
		names = append(names, n)
	}
	return inbox.New(tr, reg, InboxQueue, names, send, Translate, logger), nil
}

// Translate maps a public event to the Audience command that records it.
func Translate(ev inbox.Event) (string, string, any, bool) {
	var cmd any
	switch b := ev.Body.(type) {
	case *customers.CustomerRegistered:
		cmd = &NoteRegistered{Name: b.Name, Email: b.Email, Stream: ev.Stream, Seq: ev.Seq}
	case *customers.EmailPermissionGranted:
		cmd = &NotePermission{Allowed: true, Stream: ev.Stream, Seq: ev.Seq}
	case *customers.EmailPermissionRevoked:
		cmd = &NotePermission{Allowed: false, Stream: ev.Stream, Seq: ev.Seq}
	case *classification.CustomerClassificationUpdated:
		cmd = &NoteClass{Class: b.Class, Stream: ev.Stream, Seq: ev.Seq}
	default:
		return "", "", nil, false
	}
	return AudienceService, ev.Key, cmd, true
}

// OutcomeReporter returns the mailer's Config.OnOutcome for a mailer that
// reaches this service over tr: each outcome is a RecordOutcomes command
// (no reply asked) to the campaign's aggregate, which records it once.
func OutcomeReporter(tr transport.Transport) (func(ctx context.Context, campaign, customer, status string) error, error) {
	reg := message.NewRegistry(nil)
	if err := message.Register[RecordOutcomes](reg, "campaigns.RecordOutcomes.v1"); err != nil {
		return nil, fmt.Errorf("outcome reporter: %w", err)
	}
	return func(ctx context.Context, campaign, customer, status string) error {
		env, err := reg.New(message.KindCommand, campaign, &RecordOutcomes{Outcomes: []Outcome{{Customer: customer, Status: status}}})
		if err != nil {
			return err
		}
		env.Destination, env.Source = Service, "mailer"
		if err := tr.Publish(ctx, env); err != nil {
			return fmt.Errorf("record %s of %s/%s: %w", status, campaign, customer, err)
		}
		return nil
	}, nil
}
