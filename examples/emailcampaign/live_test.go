package emailcampaign_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/campaigns"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/loadgen"
	"github.com/sagaflow/sagaflow/readmodel"
)

// TestEmbeddedLiveReports: the campaign report read model is visible
// live through the admin API's change stream (server-sent events): a
// client subscribed before the campaign sees its report change, up to
// the finished report with every mail the sink received.
func TestEmbeddedLiveReports(t *testing.T) {
	a := startAllInOne(t, engine.CircuitSettings{}, "127.0.0.1:0")
	ctx := contextFor(t)
	plan := loadgen.Plan{Customers: 30, Campaigns: 1, Seed: 9, Prefix: "live"}
	tg := a.target()
	if _, err := loadgen.SeedCustomers(ctx, tg, plan, nil); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, a.run.Engine.AdminURL()+"/v1/readmodels/stream?model="+campaigns.ReportsModel, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %s", resp.Status)
	}
	id := plan.CampaignID(0)
	if err := loadgen.StartCampaigns(ctx, tg, plan, 500); err != nil {
		t.Fatal(err)
	}
	changes := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var c readmodel.Change
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("change %q: %v", data, err)
		}
		if c.Key != id {
			continue
		}
		changes++
		var rep campaigns.Report
		if err := json.Unmarshal(c.Body, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Status == campaigns.StatusFinished {
			got := 0
			for _, n := range a.sink.PerCampaign()[id] {
				got += n
			}
			if len(rep.Sent) != got || got == 0 {
				t.Fatalf("finished report on the stream has %d sent, the sink %d", len(rep.Sent), got)
			}
			if changes < 3 {
				t.Fatalf("saw %d changes of the report; want it live (opened, audience, mails, finished)", changes)
			}
			t.Logf("%d live changes of %s, the last: %d sent", changes, id, len(rep.Sent))
			return
		}
	}
	t.Fatalf("stream ended before the finished report (%d changes seen): %v", changes, sc.Err())
}
