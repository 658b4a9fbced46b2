package emailcampaign_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/sagaflow/sagaflow/examples/emailcampaign/campaigns"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/loadgen"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/smtpsink"
)

// checkCampaign checks a finished campaign's report against what the
// SMTP sink received and against the plan: every eligible customer with
// a deliverable address got exactly one mail, nobody else got one, and
// the report's lists match. except are customers (e.g. one who revoked
// permission during the campaign) allowed to have got at most one mail
// and who are then in the report's sent list, else in skipped.
func checkCampaign(t *testing.T, people []loadgen.Customer, rep campaigns.Report, sink *smtpsink.Sink, except ...string) {
	t.Helper()
	got := sink.PerCampaign()[rep.ID]
	if rep.Status != campaigns.StatusFinished {
		t.Errorf("%s: status %q, want finished", rep.ID, rep.Status)
	}
	wantAudience := 0
	for _, c := range people {
		n := got[c.ID]
		bounces := strings.HasSuffix(c.Email, "@"+loadgen.BounceDomain)
		switch {
		case slices.Contains(except, c.ID):
			if n > 1 {
				t.Errorf("%s: %s got %d mails, want at most 1", rep.ID, c.ID, n)
			}
			if n == 1 && !slices.Contains(rep.Sent, c.ID) {
				t.Errorf("%s: %s got a mail the report does not list as sent", rep.ID, c.ID)
			}
			if n == 0 && !slices.Contains(rep.Skipped, c.ID) {
				t.Errorf("%s: %s got no mail and is not skipped in the report (sent %v)", rep.ID, c.ID, slices.Contains(rep.Sent, c.ID))
			}
			wantAudience++
		case c.Eligible() && bounces:
			wantAudience++
			if n != 0 || !slices.Contains(rep.Bounced, c.ID) {
				t.Errorf("%s: bouncing %s: %d mails accepted, in bounced %v; want 0 and true", rep.ID, c.ID, n, slices.Contains(rep.Bounced, c.ID))
			}
		case c.Eligible():
			wantAudience++
			if n != 1 {
				t.Errorf("%s: eligible %s (class %s, allowed %v) got %d mails, want exactly 1", rep.ID, c.ID, c.Class, c.Allowed, n)
			}
			if !slices.Contains(rep.Sent, c.ID) {
				t.Errorf("%s: eligible %s not in the report's sent list", rep.ID, c.ID)
			}
		default:
			if n != 0 {
				t.Errorf("%s: %s (class %q, allowed %v) got %d mails, want none", rep.ID, c.ID, c.Class, c.Allowed, n)
			}
			if slices.Contains(rep.Recipients, c.ID) {
				t.Errorf("%s: ineligible %s is in the audience", rep.ID, c.ID)
			}
		}
	}
	total := 0
	for _, n := range got {
		total += n
	}
	if total != len(rep.Sent) {
		t.Errorf("%s: sink has %d mails, report sent %d", rep.ID, total, len(rep.Sent))
	}
	if rep.Audience != wantAudience || len(rep.Sent)+len(rep.Bounced)+len(rep.Skipped) != rep.Audience {
		t.Errorf("%s: audience %d (want %d), sent %d + bounced %d + skipped %d", rep.ID, rep.Audience, wantAudience, len(rep.Sent), len(rep.Bounced), len(rep.Skipped))
	}
	if wantOpened := (len(rep.Sent) + 2) / 3; len(rep.Opened) != wantOpened {
		t.Errorf("%s: %d opened, want %d", rep.ID, len(rep.Opened), wantOpened)
	}
	if rep.Released != rep.Budget-len(rep.Sent)-len(rep.Bounced) {
		t.Errorf("%s: released %d of %d, want %d", rep.ID, rep.Released, rep.Budget, rep.Budget-len(rep.Sent)-len(rep.Bounced))
	}
	if wantAudience == 0 {
		t.Fatalf("%s: the plan has no eligible customer: the test proves nothing", rep.ID)
	}
}

// eligible returns the plan's eligible customers with deliverable addresses.
func eligible(people []loadgen.Customer) []loadgen.Customer {
	var out []loadgen.Customer
	for _, c := range people {
		if c.Eligible() && !strings.HasSuffix(c.Email, "@"+loadgen.BounceDomain) {
			out = append(out, c)
		}
	}
	return out
}

func contextFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

type bytesBuffer = strings.Builder
