package aggregate_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/aggregate"
)

type cmd struct{}

func define[S any](initial S) *aggregate.Definition[S] {
	d := aggregate.New("svc", "svc.Thing", func(string) S { return initial })
	aggregate.Handle(d, func(S, *cmd) ([]any, error) { return nil, nil })
	return d
}

func TestSnapshotEveryRefusesStatesJSONWouldLose(t *testing.T) {
	type nested struct{ hidden int }
	type (
		good struct {
			A  string
			T  time.Time
			M  map[string][]int
			P  *good
			Ok bool `json:"ok,omitempty"`
		}
		unexported struct{ a int }
		dashed     struct {
			A int `json:"-"`
		}
		iface  struct{ V any }
		fn     struct{ F func() }
		inside struct{ N []nested }
	)
	if err := define(good{}).SnapshotEvery(10).Validate(); err != nil {
		t.Errorf("good state: %v", err)
	}
	for name, c := range map[string]struct {
		err     error
		mention string
	}{
		"unexported": {define(unexported{}).SnapshotEvery(10).Validate(), "state.a is unexported"},
		"json dash":  {define(dashed{}).SnapshotEvery(10).Validate(), `json:"-"`},
		"interface":  {define(iface{}).SnapshotEvery(10).Validate(), "interface"},
		"func":       {define(fn{}).SnapshotEvery(10).Validate(), "func"},
		"nested":     {define(inside{}).SnapshotEvery(10).Validate(), "hidden is unexported"},
		"zero":       {define(good{}).SnapshotEvery(0).Validate(), "at least 1"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.mention) {
			t.Errorf("%s: Validate = %v, want an error mentioning %q", name, c.err, c.mention)
		}
	}
	_ = unexported{a: 0}
	_ = nested{hidden: 0}
}

func TestStateRoundTripAndSchema(t *testing.T) {
	type v1 struct {
		Name  string   `json:"name"`
		Items []string `json:"items"`
	}
	type v2 struct {
		Name  string   `json:"name"`
		Items []string `json:"items"`
		Extra int      `json:"extra"`
	}
	d1, d2 := define(v1{}).SnapshotEvery(5), define(v2{}).SnapshotEvery(5)
	if d1.SnapshotInterval() != 5 {
		t.Errorf("SnapshotInterval = %d, want 5", d1.SnapshotInterval())
	}
	if d1.StateSchema() == d2.StateSchema() || d1.StateSchema() != define(v1{}).StateSchema() {
		t.Errorf("schemas: v1 %s, v2 %s; want them to differ and v1's to be stable", d1.StateSchema(), d2.StateSchema())
	}
	data, err := d1.EncodeState(v1{Name: "n", Items: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	back, err := d1.DecodeState(data)
	if err != nil || back.(v1).Name != "n" || len(back.(v1).Items) != 1 {
		t.Fatalf("round trip = %+v, %v", back, err)
	}
	if _, err := d1.DecodeState([]byte(`{"name":"n","extra":1}`)); err == nil {
		t.Error("DecodeState accepted an unknown field")
	}
	if _, err := d1.EncodeState("not a v1"); err == nil {
		t.Error("EncodeState accepted a state of another type")
	}
}
