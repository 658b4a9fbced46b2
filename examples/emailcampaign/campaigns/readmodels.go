package campaigns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/sagaflow/sagaflow/projection"
	"github.com/sagaflow/sagaflow/readmodel"
)

// Read-model (projection) names.
const (
	// AudienceModel has one Member per customer.
	AudienceModel = "campaigns.audience"
	// ReportsModel has one Report per campaign.
	ReportsModel = "campaigns.reports"
)

// Report is a document of the reports read model: a campaign's log.
type Report struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Subject    string   `json:"subject"`
	Status     string   `json:"status"`
	Budget     int      `json:"budget"`
	Released   int      `json:"released"`
	Audience   int      `json:"audience"`
	Sent       []string `json:"sent"`
	Bounced    []string `json:"bounced"`
	Skipped    []string `json:"skipped"`
	Opened     []string `json:"opened"`
	Reason     string   `json:"reason,omitempty"`
	Recipients []string `json:"recipients,omitempty"`
}

// AudienceProjection builds the audience read model.
func AudienceProjection() *projection.Projection {
	p := projection.New(AudienceModel)
	projection.On(p, func(ctx context.Context, tx readmodel.Tx, e *AudienceMemberChanged, m projection.Meta) error {
		mem := e.Member
		mem.ID = m.Key
		return projection.Put(tx, m.Key, mem)
	})
	return p
}

// ReportsProjection builds the reports read model.
func ReportsProjection() *projection.Projection {
	p := projection.New(ReportsModel)
	update := func(ctx context.Context, tx readmodel.Tx, key string, f func(r *Report)) error {
		r, _, err := projection.Get[Report](ctx, tx, key)
		if err != nil {
			return err
		}
		r.ID = key
		f(&r)
		return projection.Put(tx, key, r)
	}
	projection.On(p, func(ctx context.Context, tx readmodel.Tx, e *CampaignOpened, m projection.Meta) error {
		return update(ctx, tx, m.Key, func(r *Report) {
			r.Name, r.Subject, r.Budget, r.Status = e.Name, e.Subject, e.Budget, StatusRunning
		})
	})
	projection.On(p, func(ctx context.Context, tx readmodel.Tx, e *CampaignAudienceSelected, m projection.Meta) error {
		return update(ctx, tx, m.Key, func(r *Report) { r.Audience, r.Recipients = len(e.Recipients), e.Recipients })
	})
	projection.On(p, func(ctx context.Context, tx readmodel.Tx, e *CampaignMailRecorded, m projection.Meta) error {
		return update(ctx, tx, m.Key, func(r *Report) {
			switch e.Status {
			case Sent:
				r.Sent = append(r.Sent, e.Customer)
			case Bounced:
				r.Bounced = append(r.Bounced, e.Customer)
			default:
				r.Skipped = append(r.Skipped, e.Customer)
			}
			if r.Status == StatusCancelled {
				// A late record of a mail in flight when it was cancelled.
				r.Released = r.Budget - len(r.Sent) - len(r.Bounced)
			}
		})
	})
	projection.On(p, func(ctx context.Context, tx readmodel.Tx, e *CampaignMailOpened, m projection.Meta) error {
		return update(ctx, tx, m.Key, func(r *Report) {
			if !slices.Contains(r.Opened, e.Customer) {
				r.Opened = append(r.Opened, e.Customer)
			}
		})
	})
	projection.On(p, func(ctx context.Context, tx readmodel.Tx, e *CampaignClosed, m projection.Meta) error {
		return update(ctx, tx, m.Key, func(r *Report) { r.Status, r.Released = StatusFinished, e.Released })
	})
	projection.On(p, func(ctx context.Context, tx readmodel.Tx, e *CampaignCancelledPublic, m projection.Meta) error {
		return update(ctx, tx, m.Key, func(r *Report) { r.Status, r.Released, r.Reason = StatusCancelled, e.Released, e.Reason })
	})
	return p
}

// Reader reads the campaign service's read models from a read-model store.
type Reader struct {
	rm readmodel.Store
}

// NewReader returns a Reader on rm (the store the campaign engine's
// projections write: engine.Options.ReadModels).
func NewReader(rm readmodel.Store) *Reader { return &Reader{rm: rm} }

// Member returns a customer as the audience read model has it (ok false
// when unknown).
func (r *Reader) Member(ctx context.Context, customer string) (m Member, ok bool, err error) {
	ok, err = r.get(ctx, AudienceModel, customer, &m)
	return m, ok, err
}

// Report returns a campaign's report (ok false when unknown).
func (r *Reader) Report(ctx context.Context, campaign string) (rep Report, ok bool, err error) {
	ok, err = r.get(ctx, ReportsModel, campaign, &rep)
	return rep, ok, err
}

// Members returns every member of the audience read model, by ID.
func (r *Reader) Members(ctx context.Context) ([]Member, error) {
	var out []Member
	after := ""
	for range 100000 { // bounded: 100,000 pages of 500
		docs, err := r.rm.List(ctx, AudienceModel, after, 500)
		if err != nil {
			return nil, fmt.Errorf("list %s after %q: %w", AudienceModel, after, err)
		}
		for _, d := range docs {
			var m Member
			if err := json.Unmarshal(d.Body, &m); err != nil {
				return nil, fmt.Errorf("%s/%s: %w", AudienceModel, d.Key, err)
			}
			out = append(out, m)
		}
		if len(docs) < 500 {
			return out, nil
		}
		after = docs[len(docs)-1].Key
	}
	return nil, fmt.Errorf("list %s: more than 50,000,000 documents", AudienceModel)
}

// Allowed implements mailer.Checker: the customer allows email now.
func (r *Reader) Allowed(ctx context.Context, customer string) (bool, error) {
	m, ok, err := r.Member(ctx, customer)
	return ok && m.Allowed, err
}

// Cancelled implements mailer.Checker: the campaign was cancelled.
func (r *Reader) Cancelled(ctx context.Context, campaign string) (bool, error) {
	rep, ok, err := r.Report(ctx, campaign)
	return ok && rep.Status == StatusCancelled, err
}

func (r *Reader) get(ctx context.Context, model, key string, v any) (bool, error) {
	d, err := r.rm.Get(ctx, model, key)
	if errors.Is(err, readmodel.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s/%s: %w", model, key, err)
	}
	if err := json.Unmarshal(d.Body, v); err != nil {
		return false, fmt.Errorf("read %s/%s: %w", model, key, err)
	}
	return true, nil
}
