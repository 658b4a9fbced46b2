package mailer_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/sagaflow/sagaflow/examples/emailcampaign/mailer"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/smtpsink"
)

type checker struct {
	mu        sync.Mutex
	denied    map[string]bool
	cancelled bool
}

func (c *checker) Allowed(_ context.Context, customer string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.denied[customer], nil
}

func (c *checker) Cancelled(context.Context, string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cancelled, nil
}

// TestSendOverSMTP: against a real SMTP server, a batch mails each
// allowed recipient once, reports a 5xx recipient as bounced and a
// denied one as skipped; a temporary refusal fails the batch, and the
// batch sent again after it mails only what is missing.
func TestSendOverSMTP(t *testing.T) {
	sink, err := smtpsink.Start("127.0.0.1:0", "bounce.test")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ch := &checker{denied: map[string]bool{"c3": true}}
	var told []string
	var mu sync.Mutex
	m, err := mailer.New(mailer.Config{SMTPAddr: sink.Addr(), Checker: ch, Workers: 1,
		OnOutcome: func(_ context.Context, campaign, customer, status string) error {
			mu.Lock()
			defer mu.Unlock()
			told = append(told, customer+"="+status)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	batch := &mailer.SendBatch{Campaign: "k", Subject: "hi", Body: "text", Recipients: []mailer.Recipient{
		{Customer: "c1", Email: "c1@example.com"}, {Customer: "c2", Email: "c2@bounce.test"},
		{Customer: "c3", Email: "c3@example.com"}, {Customer: "c4", Email: "c4@example.com"},
	}}
	sink.RefuseAfter(1)
	if _, err := m.Send(context.Background(), batch); err == nil {
		t.Fatal("a batch the server refused in part succeeded")
	}
	first := sink.Count()
	sink.Refuse(false)
	res, err := m.Send(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(res.Sent)
	if !slices.Equal(res.Sent, []string{"c1", "c4"}) || !slices.Equal(res.Bounced, []string{"c2"}) ||
		len(res.Skipped) != 1 || res.Skipped[0] != (mailer.Skip{Customer: "c3", Reason: mailer.SkipNoPermission}) {
		t.Fatalf("result %+v", res)
	}
	per := sink.PerCampaign()["k"]
	if per["c1"] != 1 || per["c4"] != 1 || len(per) != 2 {
		t.Fatalf("sink got %v (first attempt %d), want c1 and c4 once", per, first)
	}
	if !slices.Contains(told, "c1=sent") || !slices.Contains(told, "c2=bounced") {
		t.Fatalf("outcomes told %v", told)
	}
	ch.mu.Lock()
	ch.cancelled = true
	ch.mu.Unlock()
	res, err = m.Send(context.Background(), &mailer.SendBatch{Campaign: "k", Recipients: []mailer.Recipient{{Customer: "c9", Email: "c9@example.com"}}})
	if err != nil || len(res.Skipped) != 1 || res.Skipped[0].Reason != mailer.SkipCancelled {
		t.Fatalf("cancelled campaign: %+v, %v", res, err)
	}
	if _, err := mailer.New(mailer.Config{SMTPAddr: "nowhere", Checker: ch}); err == nil {
		t.Fatal("a bad SMTP address accepted")
	}
}
