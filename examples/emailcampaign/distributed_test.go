package emailcampaign_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/client"
	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/campaigns"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/customers"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/loadgen"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/smtpsink"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/system"
	"github.com/sagaflow/sagaflow/internal/testenv"
	"github.com/sagaflow/sagaflow/transport/rabbitmq"
)

// TestDistributedCampaigns: the four services as separate processes
// (built with go build), over RabbitMQ and the MongoDB server, mailing an
// SMTP sink in the test. Two campaigns at once over a few dozen customers
// of mixed classes and permissions; while their first mails are held at
// the SMTP server, one recipient revokes email permission, and gets no
// mail from either campaign. Every other eligible customer gets exactly
// one mail per campaign, nobody else any, and the reports (read through
// the campaign service's admin API) match the sink.
func TestDistributedCampaigns(t *testing.T) {
	amqpURL := testenv.RabbitMQ(t)
	mongoURI := testenv.MongoDB(t)
	ctx := contextFor(t)
	bin := t.TempDir()
	start := time.Now()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin+string(filepath.Separator), "./cmd/customers", "./cmd/classification", "./cmd/campaigns", "./cmd/mailer")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built the services in %v", time.Since(start))

	sink, err := smtpsink.Start("127.0.0.1:0", loadgen.BounceDomain)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	run := fmt.Sprintf("ectest%d", rand.Uint32())
	env := append(os.Environ(),
		"SAGAFLOW_AMQP_URL="+amqpURL, "SAGAFLOW_MONGO_URI="+mongoURI,
		"EMAILCAMPAIGN_TOPOLOGY="+run, "EMAILCAMPAIGN_DATABASE="+run, "EMAILCAMPAIGN_PARTITIONS=4",
		"EMAILCAMPAIGN_SMTP="+sink.Addr(),
	)
	cfg := system.Config{AMQPURL: amqpURL, Topology: run, Partitions: 4}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := system.Teardown(c, cfg); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	var adminURL string
	for _, svc := range []string{"customers", "classification", "campaigns", "mailer"} {
		line := startProcess(t, filepath.Join(bin, svc), env, svc == "campaigns")
		if svc == "campaigns" {
			m := regexp.MustCompile(`admin=(\S+)`).FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("campaigns: no admin URL in %q", line)
			}
			adminURL = m[1]
		}
	}
	t.Logf("services ready after %v; campaigns admin %s", time.Since(start), adminURL)

	tr, err := rabbitmq.Dial(ctx, amqpURL, rabbitmq.WithName(run), rabbitmq.WithPartitions(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	e := engine.New(engine.Options{AdminAddr: engine.AdminOff})
	customers.Setup(e)
	e.Register(campaigns.Messages()...)
	if err := e.Err(); err != nil {
		t.Fatal(err)
	}
	tg := loadgen.RemoteTarget{Transport: tr, Registry: e.Registry(), Campaigns: client.New(adminURL)}

	plan := loadgen.Plan{Customers: 90, Campaigns: 2, Seed: 1, Prefix: "dist"}
	people, err := loadgen.SeedCustomers(ctx, tg, plan, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d customers after %v", len(people), time.Since(start))
	// The revoker is the last recipient of lane 0: with the mailer's 4
	// workers per batch held at the SMTP server on the lane's first 4,
	// the mailer checks the revoker only after the sink lets them go.
	var audience []loadgen.Customer
	for _, c := range people {
		if c.Eligible() {
			audience = append(audience, c)
		}
	}
	var lane0 []string
	for j := 0; j < len(audience); j += campaigns.Lanes {
		lane0 = append(lane0, audience[j].ID)
	}
	revoker := ""
	for j := len(lane0) - 1; j >= 4 && revoker == ""; j-- { // after the 4 held
		if !strings.HasSuffix(findPerson(people, lane0[j]).Email, "@"+loadgen.BounceDomain) {
			revoker = lane0[j]
		}
	}
	if revoker == "" {
		t.Fatalf("lane 0 (%v) has no deliverable recipient after its first 4; the plan needs more eligible customers", lane0)
	}

	sink.Hold()
	released := false
	defer func() {
		if !released {
			sink.Release()
		}
	}()
	if err := loadgen.StartCampaigns(ctx, tg, plan, 1000); err != nil {
		t.Fatal(err)
	}
	for i := range plan.Campaigns {
		if _, err := loadgen.WaitReport(ctx, tg, plan.CampaignID(i), func(r campaigns.Report) bool { return r.Audience > 0 }); err != nil {
			t.Fatal(err)
		}
	}
	if err := tg.Send(ctx, customers.Service, revoker, &customers.RevokeEmailPermission{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if m, ok, err := tg.Member(ctx, revoker); err == nil && ok && !m.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revocation of %s not in the audience read model after 1m", revoker)
		}
	}
	held := sink.Held()
	sink.Release()
	released = true
	res, err := loadgen.FinishCampaigns(ctx, tg, plan, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("2 campaigns done after %v (%d MAIL commands were held)", time.Since(start), held)
	if held == 0 {
		t.Error("no mail was held at the SMTP server: the revocation did not race the campaigns")
	}
	for i, rep := range res.Reports {
		if res.Statuses[i] != "completed" {
			t.Errorf("%s: saga %s", rep.ID, res.Statuses[i])
		}
		checkCampaign(t, people, rep, sink, revoker)
		if n := sink.PerCampaign()[rep.ID][revoker]; n != 0 {
			t.Errorf("%s: %s got %d mails after the revocation was processed", rep.ID, revoker, n)
		}
	}
	var b strings.Builder
	_ = loadgen.Print(&b, res.Reports)
	t.Log("\n" + b.String())
}

func findPerson(people []loadgen.Customer, id string) loadgen.Customer {
	for _, c := range people {
		if c.ID == id {
			return c
		}
	}
	return loadgen.Customer{}
}

// startProcess starts a service binary and waits (60s) for its ready
// line, which it returns; the test stops it with SIGTERM at its end and
// shows its log when the test failed.
func startProcess(t *testing.T, path string, env []string, admin bool) string {
	t.Helper()
	cmd := exec.Command(path)
	cmd.Env = env
	if admin {
		cmd.Env = append(cmd.Env, "EMAILCAMPAIGN_ADMIN_ADDR=127.0.0.1:0")
	}
	logPath := filepath.Join(t.TempDir(), filepath.Base(path)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("%s exited with %v", filepath.Base(path), err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("%s did not stop in 30s after SIGTERM", filepath.Base(path))
		}
		_ = logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("%s log (last 30 lines):\n%s", filepath.Base(path), strings.Join(lines[max(0, len(lines)-30):], "\n"))
		}
	})
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("%s exited before it was ready: %v\n%s", filepath.Base(path), err, b)
		default:
		}
		f, err := os.Open(logPath)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "msg=ready") {
				f.Close()
				return sc.Text()
			}
		}
		f.Close()
	}
	t.Fatalf("%s not ready in 1m", filepath.Base(path))
	return ""
}
