package storetest

import (
	"errors"
	"testing"

	"github.com/sagaflow/sagaflow/store"
)

// testHandled (I3): a stream records the messages it handled in the same
// write as their effect; a second commit naming one of them is refused
// and writes nothing; other streams are not affected.
func (s *suite) testHandled(t *testing.T) {
	ctx := testContext(t)
	st := s.newStore(t)
	withHandled := func(stream string, v uint64, handled ...string) store.Commit {
		c := fullCommit(stream, v, "h")
		c.Handled = handled
		return c
	}

	requireHandled(t, ctx, st, "h", "m1", 0, false) // unknown stream

	steps := []struct {
		name   string
		commit store.Commit
		want   error
	}{
		{"FirstCommitHandlesM1", withHandled("h", 1, "m1"), nil},
		{"SecondCommitHandlesM2M3", withHandled("h", 2, "m2", "m3"), nil},
		{"M2Again", withHandled("h", 3, "m2"), store.ErrAlreadyHandled},
		{"M4AndM2Again", withHandled("h", 3, "m4", "m2"), store.ErrAlreadyHandled},
		{"M1ByAnotherStream", withHandled("h2", 1, "m1"), nil},
		{"M4", withHandled("h", 3, "m4"), nil},
		{"M4AgainByAnotherStream", withHandled("h2", 2, "m4"), nil},
		{"M4AgainByAnotherStreamAgain", withHandled("h2", 3, "m4"), store.ErrAlreadyHandled},
	}
	for _, step := range steps {
		err := st.Append(ctx, step.commit)
		if !errors.Is(err, step.want) { // errors.Is(nil, nil) is true
			t.Fatalf("%s: Append(%s v%d) = %v, want %v", step.name, step.commit.Stream, step.commit.Version, err, step.want)
		}
	}

	tests := []struct {
		stream, msg string
		version     uint64
		ok          bool
	}{
		{"h", "m1", 1, true},
		{"h", "m2", 2, true},
		{"h", "m3", 2, true},
		{"h", "m4", 3, true},
		{"h", "m5", 0, false},
		{"h2", "m1", 1, true},
		{"h2", "m2", 0, false},
		{"h2", "m4", 2, true},
		{"h3", "m1", 0, false},
	}
	for _, tc := range tests {
		requireHandled(t, ctx, st, tc.stream, tc.msg, tc.version, tc.ok)
	}
	if got := versions(mustLoad(t, ctx, st, "h", 0)); len(got) != 3 {
		t.Fatalf("Load(h) versions = %v, want [1 2 3]", got)
	}
	if got := mustLoad(t, ctx, st, "h", 3); len(got) != 1 || len(got[0].Handled) != 1 || got[0].Handled[0] != "m4" {
		t.Fatalf("Load(h, 3) = %+v, want the commit that handled m4 only", got)
	}
}
