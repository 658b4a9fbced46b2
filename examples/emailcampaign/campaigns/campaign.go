package campaigns

import (
	"errors"
	"fmt"

	"github.com/sagaflow/sagaflow/aggregate"
)

// Service is the queue of the Campaign aggregate's commands.
const Service = "campaigns"

// CampaignAggregate is the Campaign aggregate's type name.
const CampaignAggregate = "campaigns.Campaign"

// Outcome statuses.
const (
	Sent    = "sent"
	Bounced = "bounced"
	Skipped = "skipped"
)

// Campaign statuses in the report.
const (
	StatusRunning   = "running"
	StatusFinished  = "finished"
	StatusCancelled = "cancelled"
)

// Outcome is what happened to one recipient.
type Outcome struct {
	Customer string `json:"customer"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
}

// Commands of the Campaign aggregate.
type (
	// ReserveBudget opens the campaign and reserves Budget mails.
	ReserveBudget struct {
		Name    string `json:"name"`
		Subject string `json:"subject"`
		Budget  int    `json:"budget"`
	}
	// ReleaseBudget is the compensation of ReserveBudget: it releases what
	// was not used and marks the campaign cancelled.
	ReleaseBudget struct {
		Reason string `json:"reason,omitempty"`
	}
	// RecordAudience records how many recipients were selected.
	RecordAudience struct {
		Recipients []string `json:"recipients"`
	}
	// RecordOutcomes records the outcome of each recipient (once each).
	RecordOutcomes struct {
		Outcomes []Outcome `json:"outcomes"`
	}
	// RecordOpened records that a recipient opened the mail.
	RecordOpened struct {
		Customer string `json:"customer"`
	}
	// Finish closes the campaign and releases the unused budget.
	Finish struct{}
)

// Internal events of the Campaign aggregate; each is also published, as
// the public type of the same shape (see publicCampaignEvents).
type (
	// BudgetReserved opened the campaign.
	BudgetReserved struct {
		Name    string `json:"name"`
		Subject string `json:"subject"`
		Budget  int    `json:"budget"`
	}
	// AudienceSelected records the selected recipients.
	AudienceSelected struct {
		Recipients []string `json:"recipients"`
	}
	// MailRecorded records one recipient's outcome.
	MailRecorded struct {
		Outcome
	}
	// MailOpened records a reaction.
	MailOpened struct {
		Customer string `json:"customer"`
	}
	// CampaignFinished closed the campaign.
	CampaignFinished struct {
		Sent     int `json:"sent"`
		Bounced  int `json:"bounced"`
		Skipped  int `json:"skipped"`
		Released int `json:"released"`
	}
	// CampaignCancelled closed it early, releasing what was not used by
	// then (mails of batches in flight are recorded after it; the report
	// subtracts them).
	CampaignCancelled struct {
		Released int    `json:"released"`
		Reason   string `json:"reason,omitempty"`
	}
)

// Public events of the Campaign aggregate.
type (
	// CampaignOpened is published for BudgetReserved.
	CampaignOpened BudgetReserved
	// CampaignAudienceSelected is published for AudienceSelected.
	CampaignAudienceSelected AudienceSelected
	// CampaignMailRecorded is published for MailRecorded.
	CampaignMailRecorded MailRecorded
	// CampaignMailOpened is published for MailOpened.
	CampaignMailOpened MailOpened
	// CampaignClosed is published for CampaignFinished.
	CampaignClosed CampaignFinished
	// CampaignCancelledPublic is published for CampaignCancelled.
	CampaignCancelledPublic CampaignCancelled
)

// CampaignState is a campaign's log.
type CampaignState struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Budget   int               `json:"budget"`
	Status   string            `json:"status"`
	Outcomes map[string]string `json:"outcomes,omitempty"`
	Opened   map[string]bool   `json:"opened,omitempty"`
}

func (s CampaignState) count(status string) int {
	n := 0
	for _, st := range s.Outcomes {
		if st == status {
			n++
		}
	}
	return n
}

// Campaign returns the Campaign aggregate.
func Campaign() *aggregate.Definition[CampaignState] {
	d := aggregate.New(Service, CampaignAggregate, func(id string) CampaignState { return CampaignState{ID: id} })
	aggregate.Handle(d, func(s CampaignState, c *ReserveBudget) ([]any, error) {
		if s.Status != "" {
			return nil, nil // reserved before: a redelivered step
		}
		if c.Budget <= 0 {
			return nil, fmt.Errorf("campaign %s: budget %d: must be positive", s.ID, c.Budget)
		}
		return []any{&BudgetReserved{Name: c.Name, Subject: c.Subject, Budget: c.Budget}}, nil
	})
	aggregate.Handle(d, func(s CampaignState, c *ReleaseBudget) ([]any, error) {
		if s.Status != StatusRunning {
			return nil, nil // nothing reserved, or closed already
		}
		return []any{&CampaignCancelled{Released: s.Budget - s.count(Sent) - s.count(Bounced), Reason: c.Reason}}, nil
	})
	aggregate.Handle(d, func(s CampaignState, c *RecordAudience) ([]any, error) {
		if s.Status != StatusRunning {
			return nil, fmt.Errorf("campaign %s is %q, not running", s.ID, s.Status)
		}
		if len(c.Recipients) > s.Budget {
			return nil, fmt.Errorf("campaign %s: %d recipients over the budget of %d", s.ID, len(c.Recipients), s.Budget)
		}
		return []any{&AudienceSelected{Recipients: c.Recipients}}, nil
	})
	aggregate.Handle(d, func(s CampaignState, c *RecordOutcomes) ([]any, error) {
		if s.Status == "" {
			return nil, fmt.Errorf("campaign %s was not opened", s.ID)
		}
		// Outcomes are recorded in any later status: a mail that went out
		// while the campaign was being cancelled went out all the same.
		var evs []any
		seen := map[string]bool{}
		for _, o := range c.Outcomes {
			if o.Status != Sent && o.Status != Bounced && o.Status != Skipped {
				return nil, fmt.Errorf("customer %s: outcome %q: want sent, bounced or skipped", o.Customer, o.Status)
			}
			if o.Customer == "" || seen[o.Customer] || s.Outcomes[o.Customer] != "" {
				continue
			}
			seen[o.Customer] = true
			evs = append(evs, &MailRecorded{Outcome: o})
		}
		return evs, nil
	})
	aggregate.Handle(d, func(s CampaignState, c *RecordOpened) ([]any, error) {
		if s.Outcomes[c.Customer] != Sent {
			return nil, fmt.Errorf("campaign %s: no mail was sent to %q", s.ID, c.Customer)
		}
		if s.Opened[c.Customer] {
			return nil, nil
		}
		return []any{&MailOpened{Customer: c.Customer}}, nil
	})
	aggregate.Handle(d, func(s CampaignState, _ *Finish) ([]any, error) {
		switch s.Status {
		case StatusFinished:
			return nil, nil
		case StatusRunning:
		default:
			return nil, errors.New("campaign " + s.ID + " is not running")
		}
		sent, bounced := s.count(Sent), s.count(Bounced)
		return []any{&CampaignFinished{Sent: sent, Bounced: bounced, Skipped: s.count(Skipped), Released: s.Budget - sent - bounced}}, nil
	})
	aggregate.Apply(d, func(s CampaignState, e *BudgetReserved) CampaignState {
		s.Name, s.Budget, s.Status = e.Name, e.Budget, StatusRunning
		return s
	})
	aggregate.Apply(d, func(s CampaignState, _ *AudienceSelected) CampaignState { return s })
	aggregate.Apply(d, func(s CampaignState, e *MailRecorded) CampaignState {
		if s.Outcomes == nil {
			s.Outcomes = map[string]string{}
		}
		s.Outcomes[e.Customer] = e.Status
		return s
	})
	aggregate.Apply(d, func(s CampaignState, e *MailOpened) CampaignState {
		if s.Opened == nil {
			s.Opened = map[string]bool{}
		}
		s.Opened[e.Customer] = true
		return s
	})
	aggregate.Apply(d, func(s CampaignState, _ *CampaignFinished) CampaignState { s.Status = StatusFinished; return s })
	aggregate.Apply(d, func(s CampaignState, _ *CampaignCancelled) CampaignState { s.Status = StatusCancelled; return s })
	aggregate.Publish(d, func(e *BudgetReserved) (*CampaignOpened, error) { p := CampaignOpened(*e); return &p, nil })
	aggregate.Publish(d, func(e *AudienceSelected) (*CampaignAudienceSelected, error) {
		p := CampaignAudienceSelected(*e)
		return &p, nil
	})
	aggregate.Publish(d, func(e *MailRecorded) (*CampaignMailRecorded, error) { p := CampaignMailRecorded(*e); return &p, nil })
	aggregate.Publish(d, func(e *MailOpened) (*CampaignMailOpened, error) { p := CampaignMailOpened(*e); return &p, nil })
	aggregate.Publish(d, func(e *CampaignFinished) (*CampaignClosed, error) { p := CampaignClosed(*e); return &p, nil })
	aggregate.Publish(d, func(e *CampaignCancelled) (*CampaignCancelledPublic, error) {
		p := CampaignCancelledPublic(*e)
		return &p, nil
	})
	return d
}
