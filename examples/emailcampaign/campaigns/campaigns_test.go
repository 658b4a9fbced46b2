package campaigns_test

import (
	"reflect"
	"testing"

	"github.com/sagaflow/sagaflow/aggregate"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/campaigns"
	"github.com/sagaflow/sagaflow/examples/emailcampaign/mailer"
)

// run decides and applies cmds in order on a fresh aggregate id and
// returns the final state and the events of each command.
func run[S any](t *testing.T, d *aggregate.Definition[S], id string, cmds ...any) (S, [][]any) {
	t.Helper()
	state := d.Initial(id)
	var all [][]any
	for _, c := range cmds {
		evs, err := d.Decide(state, c)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		for _, e := range evs {
			if state, err = d.Apply(state, e); err != nil {
				t.Fatal(err)
			}
		}
		all = append(all, evs)
	}
	return state.(S), all
}

func TestAudienceLatestWinsOncePerSequence(t *testing.T) {
	const cust = "customers/c1"
	s, evs := run(t, campaigns.Audience(), "c1",
		&campaigns.NoteRegistered{Name: "Ada", Email: "ada@example.com", Stream: cust, Seq: 1},
		&campaigns.NotePermission{Allowed: false, Stream: cust, Seq: 3}, // the revocation came first
		&campaigns.NotePermission{Allowed: true, Stream: cust, Seq: 2},  // the older grant: ignored
		&campaigns.NoteClass{Class: "B", Stream: "classification/c1", Seq: 1},
		&campaigns.NoteClass{Class: "B", Stream: "classification/c1", Seq: 1}, // a redelivery
	)
	want := campaigns.Member{ID: "c1", Name: "Ada", Email: "ada@example.com", Class: "B", Allowed: false}
	if s.Member != want {
		t.Fatalf("member %+v, want %+v", s.Member, want)
	}
	if len(evs[2]) != 0 || len(evs[4]) != 0 {
		t.Fatalf("older and repeated notes recorded events: %v, %v", evs[2], evs[4])
	}
	if s.Eligible() {
		t.Fatal("a B customer who revoked is eligible")
	}
	if _, err := campaigns.Audience().Decide(campaigns.AudienceState{}, &campaigns.NoteClass{Class: "D", Stream: "x", Seq: 1}); err == nil {
		t.Fatal("class D accepted")
	}
	if _, err := campaigns.Audience().Decide(campaigns.AudienceState{}, &campaigns.NotePermission{Allowed: true}); err == nil {
		t.Fatal("a note without its source accepted")
	}
}

func TestCampaignLog(t *testing.T) {
	d := campaigns.Campaign()
	s, evs := run(t, d, "k1",
		&campaigns.ReserveBudget{Name: "n", Subject: "s", Budget: 10},
		&campaigns.ReserveBudget{Name: "n", Subject: "s", Budget: 10}, // a redelivered step
		&campaigns.RecordOutcomes{Outcomes: []campaigns.Outcome{{Customer: "a", Status: campaigns.Sent}, {Customer: "b", Status: campaigns.Bounced}}},
		&campaigns.RecordOutcomes{Outcomes: []campaigns.Outcome{{Customer: "a", Status: campaigns.Sent}, {Customer: "c", Status: campaigns.Skipped}}},
		&campaigns.RecordOpened{Customer: "a"},
		&campaigns.RecordOpened{Customer: "a"},
		&campaigns.Finish{},
		&campaigns.ReleaseBudget{}, // a late compensation does nothing
	)
	if len(evs[1]) != 0 || len(evs[3]) != 1 || len(evs[5]) != 0 || len(evs[7]) != 0 {
		t.Fatalf("repeats recorded events: %v", evs)
	}
	fin, ok := evs[6][0].(*campaigns.CampaignFinished)
	if !ok || *fin != (campaigns.CampaignFinished{Sent: 1, Bounced: 1, Skipped: 1, Released: 8}) {
		t.Fatalf("finish %+v", evs[6])
	}
	if s.Status != campaigns.StatusFinished {
		t.Fatalf("status %q", s.Status)
	}
	if _, err := d.Decide(s, &campaigns.RecordOpened{Customer: "b"}); err == nil {
		t.Fatal("an open of a bounced mail accepted")
	}

	s, evs = run(t, d, "k2",
		&campaigns.ReserveBudget{Subject: "s", Budget: 5},
		&campaigns.RecordOutcomes{Outcomes: []campaigns.Outcome{{Customer: "a", Status: campaigns.Sent}}},
		&campaigns.ReleaseBudget{Reason: "cancelled"},
		&campaigns.RecordOutcomes{Outcomes: []campaigns.Outcome{{Customer: "b", Status: campaigns.Sent}}}, // in flight at the cancellation
	)
	if c := evs[2][0].(*campaigns.CampaignCancelled); c.Released != 4 {
		t.Fatalf("cancel released %d, want 4", c.Released)
	}
	if len(evs[3]) != 1 || s.Status != campaigns.StatusCancelled {
		t.Fatalf("a late outcome: %v, status %q", evs[3], s.Status)
	}
	for _, bad := range []any{&campaigns.ReserveBudget{Budget: 0}, &campaigns.RecordOutcomes{}} {
		if _, err := d.Decide(d.Initial("k3"), bad); err == nil {
			t.Fatalf("%T on a new campaign accepted", bad)
		}
	}
}

func TestSelectAudienceAndLanes(t *testing.T) {
	members := []campaigns.Member{
		{ID: "d", Email: "d@x", Class: "B", Allowed: true},
		{ID: "a", Email: "a@x", Class: "B", Allowed: true},
		{ID: "b", Email: "b@x", Class: "A", Allowed: true},
		{ID: "c", Email: "c@x", Class: "B", Allowed: false},
		{ID: "e", Class: "B", Allowed: true}, // no address
		{ID: "f", Email: "f@x", Class: "B", Allowed: true},
	}
	got := campaigns.SelectAudience(members, 10)
	want := []mailer.Recipient{{Customer: "a", Email: "a@x"}, {Customer: "d", Email: "d@x"}, {Customer: "f", Email: "f@x"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("audience %v, want %v", got, want)
	}
	if got := campaigns.SelectAudience(members, 2); len(got) != 2 {
		t.Fatalf("budget 2: %d recipients", len(got))
	}
	seen := map[string]int{}
	for i := range campaigns.Lanes {
		for _, r := range campaigns.Lane(want, i, campaigns.Lanes) {
			seen[r.Customer]++
		}
	}
	if len(seen) != 3 || seen["a"] != 1 || seen["d"] != 1 || seen["f"] != 1 {
		t.Fatalf("lanes cover %v, want each recipient once", seen)
	}
}
