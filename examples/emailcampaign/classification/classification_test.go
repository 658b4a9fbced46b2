package classification_test

import (
	"testing"

	"github.com/sagaflow/sagaflow/examples/emailcampaign/classification"
)

// TestPublishesOnlyClassChanges: C, then B, then B again (no event), then
// A; a repeated order changes nothing.
func TestPublishesOnlyClassChanges(t *testing.T) {
	d := classification.Aggregate()
	state := d.Initial("c1")
	var published []string
	for _, o := range []classification.RecordOrder{{"o1", 100}, {"o2", 150}, {"o2", 150}, {"o3", 100}, {"o4", 700}} {
		evs, err := d.Decide(state, &o)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if state, err = d.Apply(state, e); err != nil {
				t.Fatal(err)
			}
			p, ok, err := d.PublicEvent(e)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				published = append(published, p.(*classification.CustomerClassificationUpdated).Class)
			}
		}
	}
	if got := state.(classification.State); got.Total != 1050 || got.Class != "A" {
		t.Fatalf("state %+v, want total 1050 class A", got)
	}
	if len(published) != 3 || published[0] != "C" || published[1] != "B" || published[2] != "A" {
		t.Fatalf("published %v, want [C B A]", published)
	}
	if _, err := d.Decide(state, &classification.RecordOrder{OrderID: "x", Amount: 0}); err == nil {
		t.Fatal("an order of 0 accepted")
	}
}
