// Package loadgen seeds the email-campaign example and drives load: N
// customers with order histories and email permissions, then M
// campaigns, with a progress bar, and returns the final campaign
// reports. The data is a pure function of the plan (Customers), so a test
// knows whom each campaign must reach. It talks to the services through a
// Target: in one process (the engine) or over the broker and the campaign
// service's admin API.
package loadgen

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/sagaflow/sagaflow/examples/emailcampaign/campaigns"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/classification"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/customers"
)

// BounceDomain is the domain of the generated addresses that bounce.
const BounceDomain = "bounce.example"

// Target is how the load generator reaches the services.
type Target interface {
	// Send sends a command to an aggregate of service.
	Send(ctx context.Context, service, key string, cmd any) error
	// StartCampaign starts the campaign saga (ID in.ID).
	StartCampaign(ctx context.Context, in campaigns.Input) error
	// WaitCampaign waits until the saga ended and returns its status.
	WaitCampaign(ctx context.Context, id string) (string, error)
	// Member and Report read the campaign read models.
	Member(ctx context.Context, id string) (campaigns.Member, bool, error)
	Report(ctx context.Context, id string) (campaigns.Report, bool, error)
}

// Customer is one generated customer and what the system must make of it.
type Customer struct {
	ID      string
	Name    string
	Email   string
	Allowed bool
	Orders  []int
	// Class is the expected classification ("" with no orders: nothing
	// was published).
	Class string
}

// Eligible reports whether the customer is in a campaign's audience.
func (c Customer) Eligible() bool { return c.Class == "B" && c.Allowed }

// Plan says what to generate.
type Plan struct {
	Customers int
	Campaigns int
	// Seed makes the data reproducible.
	Seed uint64
	// Prefix names the run's customers and campaigns (default "run").
	Prefix string
}

// People returns the plan's customers: a mix of classes and
// permissions, a few with bouncing addresses.
func (p Plan) People() []Customer {
	r := rand.New(rand.NewPCG(p.Seed, 42))
	prefix := p.prefix()
	out := make([]Customer, p.Customers)
	for i := range out {
		c := Customer{ID: fmt.Sprintf("%s-c%05d", prefix, i), Name: fmt.Sprintf("Customer %d", i)}
		c.Email = fmt.Sprintf("c%05d@example.com", i)
		if i%7 == 3 {
			c.Email = fmt.Sprintf("c%05d@%s", i, BounceDomain)
		}
		c.Allowed = r.IntN(10) < 6
		total := 0
		// profiles: 30% C (small orders), 40% B, 20% A, 10% no orders
		switch p := r.IntN(10); {
		case p < 3:
			c.Orders = []int{10 + r.IntN(50), 10 + r.IntN(50)}
		case p < 7:
			c.Orders = []int{100 + r.IntN(100), 60 + r.IntN(200), 50}
		case p < 9:
			c.Orders = []int{400 + r.IntN(300), 300 + r.IntN(300), 200}
		}
		for _, a := range c.Orders {
			total += a
		}
		if len(c.Orders) > 0 {
			c.Class = classification.Classify(total)
		}
		out[i] = c
	}
	return out
}

func (p Plan) prefix() string {
	if p.Prefix == "" {
		return "run"
	}
	return p.Prefix
}

// CampaignID names campaign i of the plan.
func (p Plan) CampaignID(i int) string { return fmt.Sprintf("%s-campaign-%d", p.prefix(), i+1) }

// Result is a finished run.
type Result struct {
	Customers []Customer
	Reports   []campaigns.Report
	Statuses  []string
}

// SeedCustomers registers the plan's customers, their permissions and
// their orders, then waits until the campaign audience reflects all of
// them. Progress goes to progress (nil: none).
func SeedCustomers(ctx context.Context, t Target, p Plan, progress io.Writer) ([]Customer, error) {
	cs := p.People()
	n := 0
	for _, c := range cs {
		n += 2 + len(c.Orders)
	}
	bar := newBar(progress, n, "customers: commands")
	for _, c := range cs {
		if err := t.Send(ctx, customers.Service, c.ID, &customers.Register{Name: c.Name, Email: c.Email}); err != nil {
			return nil, fmt.Errorf("register %s: %w", c.ID, err)
		}
		_ = bar.Add(1)
		if c.Allowed {
			if err := t.Send(ctx, customers.Service, c.ID, &customers.GrantEmailPermission{}); err != nil {
				return nil, fmt.Errorf("grant %s: %w", c.ID, err)
			}
		}
		_ = bar.Add(1)
		for j, a := range c.Orders {
			if err := t.Send(ctx, customers.Service, c.ID, &customers.PlaceOrder{OrderID: fmt.Sprintf("%s-o%d", c.ID, j), Amount: a}); err != nil {
				return nil, fmt.Errorf("order of %s: %w", c.ID, err)
			}
			_ = bar.Add(1)
		}
	}
	_ = bar.Finish()
	bar = newBar(progress, len(cs), "campaigns: audience read model")
	for _, c := range cs {
		if err := waitMember(ctx, t, c); err != nil {
			return nil, err
		}
		_ = bar.Add(1)
	}
	_ = bar.Finish()
	return cs, nil
}

// waitMember polls until the audience read model shows c as expected.
func waitMember(ctx context.Context, t Target, c Customer) error {
	deadline := time.Now().Add(2 * time.Minute)
	for wait := 5 * time.Millisecond; ; wait = min(wait*2, 250*time.Millisecond) {
		m, ok, err := t.Member(ctx, c.ID)
		if err != nil {
			return fmt.Errorf("read member %s: %w", c.ID, err)
		}
		if ok && m.Email == c.Email && m.Allowed == c.Allowed && m.Class == c.Class {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("member %s: read model shows %+v (found %v), want class %q allowed %v after 2m", c.ID, m, ok, c.Class, c.Allowed)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// RunCampaigns starts the plan's campaigns (all at once) and finishes
// them (FinishCampaigns).
func RunCampaigns(ctx context.Context, t Target, p Plan, budget int, progress io.Writer) (Result, error) {
	if err := StartCampaigns(ctx, t, p, budget); err != nil {
		return Result{}, err
	}
	return FinishCampaigns(ctx, t, p, progress)
}

// StartCampaigns starts the plan's campaigns.
func StartCampaigns(ctx context.Context, t Target, p Plan, budget int) error {
	for i := range p.Campaigns {
		in := campaigns.Input{ID: p.CampaignID(i), Name: fmt.Sprintf("B customers #%d", i+1), Subject: fmt.Sprintf("Our offer #%d for you", i+1), Body: "Dear customer, ...", Budget: budget}
		if err := t.StartCampaign(ctx, in); err != nil {
			return fmt.Errorf("start %s: %w", in.ID, err)
		}
	}
	return nil
}

// FinishCampaigns waits for the plan's started campaigns, records an
// open for every third mail sent, and returns the final reports.
func FinishCampaigns(ctx context.Context, t Target, p Plan, progress io.Writer) (Result, error) {
	var res Result
	bar := newBar(progress, p.Campaigns, "campaigns: running")
	for i := range p.Campaigns {
		st, err := t.WaitCampaign(ctx, p.CampaignID(i))
		if err != nil {
			return res, err
		}
		res.Statuses = append(res.Statuses, st)
		_ = bar.Add(1)
	}
	_ = bar.Finish()
	for i := range p.Campaigns {
		rep, err := WaitReport(ctx, t, p.CampaignID(i), func(r campaigns.Report) bool { return r.Status != campaigns.StatusRunning && r.Status != "" })
		if err != nil {
			return res, err
		}
		opened := 0
		for j, c := range sorted(rep.Sent) {
			if j%3 == 0 {
				if err := t.Send(ctx, campaigns.Service, rep.ID, &campaigns.RecordOpened{Customer: c}); err != nil {
					return res, fmt.Errorf("record opened: %w", err)
				}
				opened++
			}
		}
		rep, err = WaitReport(ctx, t, rep.ID, func(r campaigns.Report) bool { return len(r.Opened) == opened })
		if err != nil {
			return res, err
		}
		res.Reports = append(res.Reports, rep)
	}
	return res, nil
}

// WaitReport polls a campaign's report until done accepts it (bounded: 2m).
func WaitReport(ctx context.Context, t Target, id string, done func(campaigns.Report) bool) (campaigns.Report, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for wait := 5 * time.Millisecond; ; wait = min(wait*2, 250*time.Millisecond) {
		rep, ok, err := t.Report(ctx, id)
		if err != nil {
			return rep, fmt.Errorf("report %s: %w", id, err)
		}
		if ok && done(rep) {
			return rep, nil
		}
		if time.Now().After(deadline) {
			return rep, fmt.Errorf("report %s: not as expected after 2m: %+v", id, rep)
		}
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// Print writes the reports as a table.
func Print(w io.Writer, reports []campaigns.Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%-24s %-10s %6s %8s %5s %8s %8s %7s %9s\n", "campaign", "status", "budget", "audience", "sent", "bounced", "skipped", "opened", "released")
	for _, r := range reports {
		fmt.Fprintf(&b, "%-24s %-10s %6d %8d %5d %8d %8d %7d %9d\n", r.ID, r.Status, r.Budget, r.Audience, len(r.Sent), len(r.Bounced), len(r.Skipped), len(r.Opened), r.Released)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func newBar(w io.Writer, n int, what string) *progressbar.ProgressBar {
	if w == nil {
		w = io.Discard
	}
	return progressbar.NewOptions(n, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }))
}
