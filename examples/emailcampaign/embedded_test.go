package emailcampaign_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/campaigns"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/customers"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/loadgen"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/smtpsink"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/system"
)

// allInOne runs every service in this process on the embedded default
// and returns it once it serves; it stops when the test ends.
type allInOne struct {
	run  system.Running
	sink *smtpsink.Sink
	// hook, when set, runs before each send's checks.
	hook atomic.Pointer[func(ctx context.Context, campaign, customer string)]
}

func startAllInOne(t *testing.T, circuit engine.CircuitSettings, adminAddr ...string) *allInOne {
	t.Helper()
	sink, err := smtpsink.Start("127.0.0.1:0", loadgen.BounceDomain)
	if err != nil {
		t.Fatal(err)
	}
	a := &allInOne{sink: sink}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan system.Running, 1)
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	admin := ""
	if len(adminAddr) > 0 {
		admin = adminAddr[0]
	}
	go func() {
		done <- system.Run(ctx, system.RoleAll, system.Config{
			DataDir: t.TempDir(), SMTPAddr: sink.Addr(), Circuit: circuit, Logger: logger, AdminAddr: admin,
			BeforeSend: func(ctx context.Context, campaign, customer string) {
				if h := a.hook.Load(); h != nil {
					(*h)(ctx, campaign, customer)
				}
			},
		}, func(r system.Running) { ready <- r })
	}()
	select {
	case a.run = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("all-in-one did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("all-in-one did not start in 30s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("all-in-one stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("all-in-one did not stop in 30s")
		}
		if err := sink.Close(); err != nil {
			t.Errorf("sink: %v", err)
		}
	})
	return a
}

func (a *allInOne) target() loadgen.EngineTarget {
	return loadgen.EngineTarget{Engine: a.run.Engine, Reader: a.run.Reader}
}

func (a *allInOne) setHook(h func(ctx context.Context, campaign, customer string)) { a.hook.Store(&h) }

// TestEmbeddedCampaigns: all services in one process; a few dozen
// customers of mixed classes and permissions, two campaigns at once, one
// customer revoking permission while the first campaign is about to mail
// them. Every eligible customer gets exactly one mail per campaign,
// nobody else gets any, the revoking customer gets none from the first
// campaign, and the reports match the sink.
func TestEmbeddedCampaigns(t *testing.T) {
	a := startAllInOne(t, engine.CircuitSettings{})
	ctx := contextFor(t)
	plan := loadgen.Plan{Customers: 48, Campaigns: 2, Seed: 7, Prefix: "emb"}
	tg := a.target()
	people, err := loadgen.SeedCustomers(ctx, tg, plan, nil)
	if err != nil {
		t.Fatal(err)
	}
	el := eligible(people)
	if len(el) < 3 {
		t.Fatalf("plan has %d eligible customers; want a few", len(el))
	}
	revoker := el[len(el)-1].ID
	first := plan.CampaignID(0)
	var once sync.Once
	var revoked atomic.Bool
	a.setHook(func(ctx context.Context, campaign, customer string) {
		if campaign != first || customer != revoker {
			return
		}
		once.Do(func() {
			// The revocation is processed (it is in the campaign's read
			// model) before the mailer checks this recipient.
			if err := tg.Send(ctx, customers.Service, revoker, &customers.RevokeEmailPermission{}); err != nil {
				t.Errorf("revoke: %v", err)
				return
			}
			for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if m, ok, err := tg.Member(ctx, revoker); err == nil && ok && !m.Allowed {
					revoked.Store(true)
					return
				}
			}
			t.Errorf("revocation of %s not in the read model after 1m", revoker)
		})
	})
	start := time.Now()
	res, err := loadgen.RunCampaigns(ctx, tg, plan, 1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("2 campaigns over %d customers (%d eligible) in %v", len(people), len(el), time.Since(start))
	if !revoked.Load() {
		t.Fatalf("the mailer never reached %s in %s: the revocation was not exercised", revoker, first)
	}
	for i, rep := range res.Reports {
		if res.Statuses[i] != "completed" {
			t.Errorf("%s: saga %s", rep.ID, res.Statuses[i])
		}
		checkCampaign(t, people, rep, a.sink, revoker)
	}
	if n := a.sink.PerCampaign()[first][revoker]; n != 0 {
		t.Errorf("%s got %d mails from %s after revoking", revoker, n, first)
	}
	var b bytesBuffer
	if err := loadgen.Print(&b, res.Reports); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
}

// TestEmbeddedCancel: cancelling a campaign mid-send stops the sending
// (no mail after the cancellation is visible) and compensates: the
// budget is released and the campaign is marked cancelled.
func TestEmbeddedCancel(t *testing.T) {
	a := startAllInOne(t, engine.CircuitSettings{})
	ctx := contextFor(t)
	plan := loadgen.Plan{Customers: 48, Campaigns: 1, Seed: 3, Prefix: "cxl"}
	tg := a.target()
	people, err := loadgen.SeedCustomers(ctx, tg, plan, nil)
	if err != nil {
		t.Fatal(err)
	}
	audience := 0
	for _, c := range people {
		if c.Eligible() {
			audience++
		}
	}
	id := plan.CampaignID(0)
	var calls atomic.Int32
	started := make(chan struct{})
	var startOnce sync.Once
	a.setHook(func(ctx context.Context, campaign, customer string) {
		if calls.Add(1) <= 2 {
			return // two recipients go out
		}
		startOnce.Do(func() { close(started) })
		// Hold every further send until the cancellation is visible.
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if c, err := a.run.Reader.Cancelled(ctx, campaign); err == nil && c {
				return
			}
		}
	})
	if err := tg.StartCampaign(ctx, campaigns.Input{ID: id, Name: "to cancel", Subject: "s", Budget: 100}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(time.Minute):
		t.Fatal("sending did not start in 1m")
	}
	if err := a.run.Engine.CancelSaga(ctx, id, "test cancels"); err != nil {
		t.Fatal(err)
	}
	st, err := tg.WaitCampaign(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st != "cancelled" && st != "compensated" {
		t.Fatalf("saga ended %q, want cancelled", st)
	}
	rep, err := loadgen.WaitReport(ctx, tg, id, func(r campaigns.Report) bool { return r.Status == campaigns.StatusCancelled })
	if err != nil {
		t.Fatal(err)
	}
	// Every recipient reaches the mailer's checks (the lanes run to their
	// end); wait for that, then nothing more than before may have gone out.
	for deadline := time.Now().Add(time.Minute); int(calls.Load()) < audience; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("mailer checked %d of %d recipients in 1m", calls.Load(), audience)
		}
	}
	sent := a.sink.PerCampaign()[id]
	n := 0
	for _, k := range sent {
		n += k
	}
	if n > 2 || n >= audience {
		t.Errorf("%d mails went out for the cancelled campaign (audience %d); want at most the 2 sent before the cancellation", n, audience)
	}
	// The mails that went out are in the campaign's log, and the budget
	// they did not use is released.
	rep, err = loadgen.WaitReport(ctx, tg, id, func(r campaigns.Report) bool { return len(r.Sent) >= n })
	if err != nil {
		t.Fatal(err)
	}
	for c, k := range sent {
		if k != 1 || !slices.Contains(rep.Sent, c) {
			t.Errorf("%s: %d mails, in the report's sent list %v", c, k, slices.Contains(rep.Sent, c))
		}
	}
	if len(rep.Sent) != n || rep.Released != rep.Budget-n-len(rep.Bounced) {
		t.Errorf("report: %d sent, released %d of %d; want %d sent, %d released", len(rep.Sent), rep.Released, rep.Budget, n, rep.Budget-n-len(rep.Bounced))
	}
	t.Logf("cancelled after %d of %d mails; report %+v", n, audience, rep)
}

// TestEmbeddedMailerOutage: after a few mails the SMTP server refuses,
// the mailer's batches fail, the circuit breaker for the mailer opens;
// when the server accepts again the campaign resumes and every eligible
// customer gets exactly one mail (the retried batches skip the mails
// that went out before the outage).
func TestEmbeddedMailerOutage(t *testing.T) {
	a := startAllInOne(t, engine.CircuitSettings{Failures: 3, OpenFor: 500 * time.Millisecond})
	ctx := contextFor(t)
	plan := loadgen.Plan{Customers: 90, Campaigns: 1, Seed: 1, Prefix: "out"}
	tg := a.target()
	people, err := loadgen.SeedCustomers(ctx, tg, plan, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The outage starts mid-campaign, after a few mails of the first
	// batches went out: the retried batches must not send those again.
	a.sink.RefuseAfter(3)
	id := plan.CampaignID(0)
	if err := tg.StartCampaign(ctx, campaigns.Input{ID: id, Name: "outage", Subject: "s", Budget: 100}); err != nil {
		t.Fatal(err)
	}
	opened := false
	for deadline := time.Now().Add(time.Minute); !opened; time.Sleep(20 * time.Millisecond) {
		for _, c := range a.run.Engine.Circuits() {
			if c.Service == "mailer" && c.State == "open" {
				opened = true
			}
		}
		if time.Now().After(deadline) {
			s, _ := a.run.Engine.GetSaga(ctx, id)
			t.Fatalf("the mailer's circuit did not open in 1m; circuits %+v, refused %d, accepted %d, saga %s at step %q", a.run.Engine.Circuits(), a.sink.Refused(), a.sink.Count(), s.Status, s.Step)
		}
	}
	before := a.sink.Count()
	if before == 0 || before >= len(eligible(people)) {
		t.Fatalf("%d of %d mails went out before the outage; want some, not all", before, len(eligible(people)))
	}
	a.sink.Refuse(false)
	st, err := tg.WaitCampaign(ctx, id)
	if err != nil || st != "completed" {
		t.Fatalf("campaign ended %q, %v; want completed", st, err)
	}
	rep, err := loadgen.WaitReport(ctx, tg, id, func(r campaigns.Report) bool { return r.Status == campaigns.StatusFinished })
	if err != nil {
		t.Fatal(err)
	}
	rep.Opened = make([]string, (len(rep.Sent)+2)/3) // no opens recorded in this test
	checkCampaign(t, people, rep, a.sink)
	t.Logf("%d sent before the outage, %d MAIL commands refused, %d sent in all", before, a.sink.Refused(), len(rep.Sent))
}
