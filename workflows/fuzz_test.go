package workflows_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/workflows"
)

type fuzzInput struct {
	OrderID string            `json:"order_id"`
	Qty     int               `json:"qty"`
	Tags    []string          `json:"tags"`
	Extra   map[string]string `json:"extra"`
	Nested  *struct {
		At time.Time `json:"at"`
	} `json:"nested"`
}

type fuzzState struct {
	In    fuzzInput `json:"in"`
	Total int       `json:"total"`
}

// FuzzSagaInput (issue 11 item 13) feeds arbitrary bytes to the start of
// a saga, as the admin API's input field does: decoding never panics, a
// refusal is an error that names the workflow, and an accepted input gives
// an instance whose state decodes again.
func FuzzSagaInput(f *testing.F) {
	for _, s := range []string{``, `{}`, `null`, `{"order_id":"o-1","qty":2}`, `{"qty":"many"}`, `[1,2]`, `{"order_id":"o"} trailing`,
		`{"tags":["a",null],"extra":{"k":"v"},"nested":{"at":"2024-01-01T00:00:00Z"}}`, `{"nested":{"at":"yesterday"}}`, `"\ud800"`, `{"qty":1e400}`} {
		f.Add([]byte(s))
	}
	wf := workflows.New("fuzz.Start", 1, func(in fuzzInput) (fuzzState, error) {
		if in.Qty < 0 {
			return fuzzState{}, errors.New("qty must not be negative")
		}
		return fuzzState{In: in, Total: in.Qty * 2}, nil
	}).Do("noop", workflows.LocalStep[fuzzState]{Run: func(context.Context, *fuzzState) error { return nil }})
	if err := wf.Validate(); err != nil {
		f.Fatal(err)
	}
	env := workflows.Env{Now: time.Unix(0, 0).UTC(), NewID: func() string { return "id" }, Rand: func() float64 { return 0.5 },
		Encode: func(any) (string, []byte, error) { return "", nil, errors.New("no messages in this test") }, Queue: "q", Source: "s"}
	f.Fuzz(func(t *testing.T, input []byte) {
		dec, err := workflows.Start(wf, env, "saga-1", "", input)
		if err != nil {
			if !strings.Contains(err.Error(), `"fuzz.Start"`) {
				t.Fatalf("refusal %q does not name the workflow", err)
			}
			return
		}
		if !bytes.Equal(dec.Instance.Input, input) {
			t.Fatalf("instance input %q, want %q", dec.Instance.Input, input)
		}
		if _, err := wf.DecodeState(dec.Instance.State); err != nil {
			t.Fatalf("accepted input %q gives a state that does not decode: %v", input, err)
		}
	})
}
