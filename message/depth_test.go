package message_test

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/sagaflow/sagaflow/message"
)

func TestCheckDepth(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	cases := []struct {
		name  string
		in    string
		limit int
		ok    bool
	}{
		{"flat", `{"a":1,"b":[1,2]}`, 2, true},
		{"at the limit", deep(64), 64, true},
		{"one past the limit", deep(65), 64, false},
		{"objects count too", `{"a":{"b":{"c":{}}}}`, 3, false},
		{"brackets in strings do not count", `{"a":"[[[[{{{{"}`, 1, true},
		{"escaped quote keeps the string open", `{"a":"\"[[[[[["}`, 1, true},
		{"escaped backslash closes it", `["\\",[[[]]]]`, 3, false},
		{"unclosed, still bounded", strings.Repeat("[", 1_000_000), 64, false},
		{"not JSON is left to the decoder", `]]]}}}`, 1, true},
	}
	for _, c := range cases {
		err := message.CheckDepth([]byte(c.in), c.limit)
		if (err == nil) != c.ok {
			t.Errorf("%s: CheckDepth = %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && (!errors.Is(err, message.ErrTooDeep) || !strings.Contains(err.Error(), strconv.Itoa(c.limit)+" levels")) {
			t.Errorf("%s: error %q does not wrap ErrTooDeep and name the limit %d", c.name, err, c.limit)
		}
		// The reader gives the same answer when the text comes a byte at
		// a time (the state crosses reads), at the same offset.
		got, rerr := io.ReadAll(message.LimitDepth(iotest.OneByteReader(strings.NewReader(c.in)), c.limit))
		if (rerr == nil) != c.ok || (err != nil && (rerr == nil || rerr.Error() != err.Error())) {
			t.Errorf("%s: LimitDepth read error %v, want %v", c.name, rerr, err)
		}
		if rerr == nil && string(got) != c.in {
			t.Errorf("%s: LimitDepth changed the text", c.name)
		}
	}
}

// allocated returns the bytes f allocates, averaged over runs.
func allocated(runs int, f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

// TestHostileInputIsRefusedBeforeItIsParsed is issue 11 item 17: a payload
// far over the limit is refused by its length and a deeply nested
// envelope by a byte scan that stops at MaxEnvelopeDepth, both before any
// parse; the error names the problem and the limit, and the memory spent
// stays far below the input's size (a full parse of the 50 MiB payload, or
// encoding/json's own scan of the nesting down to its limit of 10,000,
// allocates more).
func TestHostileInputIsRefusedBeforeItIsParsed(t *testing.T) {
	r := newRegistry(t)
	huge := bytes.Repeat([]byte("x"), 50<<20) // a 50 MiB JSON string
	huge[0], huge[len(huge)-1] = '"', '"'
	nested := bytes.Repeat([]byte("["), 1_000_000) // under the 1 MiB envelope limit
	envelope := func(payload []byte) []byte {
		return append([]byte(`{"id":"m1","kind":"event","type":"inventory.Reserve.v1","key":"k","payload":`), payload...)
	}
	deepEnvelope := envelope(nested)
	hugeEnvelope := envelope(huge)
	const budget = 64 << 10 // bytes per refusal; the inputs are 1 MB and 50 MiB
	cases := []struct {
		name   string
		decode func() error
		is     []error
		words  []string
	}{
		{"envelope 1e6 deep", func() error { _, err := message.UnmarshalEnvelope(deepEnvelope, 0); return err },
			[]error{message.ErrMalformed, message.ErrTooDeep}, []string{"more than 67 levels"}},
		{"envelope 1e6 deep under a raised size limit", func() error { _, err := message.UnmarshalEnvelope(deepEnvelope, 64<<20); return err },
			[]error{message.ErrMalformed, message.ErrTooDeep}, []string{"more than 67 levels"}},
		{"envelope of 50 MiB", func() error { _, err := message.UnmarshalEnvelope(hugeEnvelope, 0); return err },
			[]error{message.ErrPayloadTooLarge}, []string{"limit 1048576"}},
		{"payload of 50 MiB", func() error { _, err := r.Decode("inventory.Reserve.v1", huge); return err },
			[]error{message.ErrMalformed, message.ErrPayloadTooLarge}, []string{"inventory.Reserve.v1", "52428800 bytes, limit 16777216"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.decode()
			for _, want := range c.is {
				if !errors.Is(err, want) {
					t.Errorf("error %v does not wrap %q", err, want)
				}
			}
			for _, w := range c.words {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v does not say %q", err, w)
				}
			}
			if n := allocated(5, func() { _ = c.decode() }); n > budget {
				t.Errorf("refusal allocated %d bytes, want at most %d: the input was parsed", n, budget)
			}
		})
	}

	// The limit is what refuses: a 2 MiB payload decodes under a 4 MiB
	// limit and is refused under a 1 MiB one.
	payload := []byte(`{"S":"` + strings.Repeat("s", 2<<20) + `"}`)
	for _, c := range []struct {
		limit int
		ok    bool
	}{{4 << 20, true}, {1 << 20, false}} {
		reg := message.NewRegistry(nil)
		message.MustRegister[struct{ S string }](reg, "big.Payload.v1")
		reg.SetMaxPayloadSize(c.limit)
		_, err := reg.Decode("big.Payload.v1", payload)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, message.ErrPayloadTooLarge)) {
			t.Errorf("a %d-byte payload under a limit of %d: %v, want ok=%v", len(payload), c.limit, err, c.ok)
		}
	}
	// A payload MaxDepth deep is accepted in an envelope, and inside the
	// deepest wrapper the engine puts around one (a routed event carries
	// the event's envelope in its payload); one level more is not.
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	routed := func(payload string) []byte {
		return envelope([]byte(`{"event":{"id":"e1","kind":"event","type":"a.B.v1","key":"k","payload":` + payload + `}}}`))
	}
	if _, err := message.UnmarshalEnvelope(envelope([]byte(deep(message.MaxDepth)+`}`)), 0); err != nil {
		t.Errorf("an envelope whose payload nests MaxDepth deep: %v", err)
	}
	if _, err := message.UnmarshalEnvelope(routed(deep(message.MaxDepth)), 0); err != nil {
		t.Errorf("a routed event whose payload nests MaxDepth deep: %v", err)
	}
	if _, err := message.UnmarshalEnvelope(routed(deep(message.MaxDepth+1)), 0); !errors.Is(err, message.ErrTooDeep) {
		t.Errorf("a routed event whose payload nests MaxDepth+1 deep: %v, want ErrTooDeep", err)
	}
	// Decode checks no depth: what the engine stores around a payload (a
	// saga's transition holds its input and state) must always decode.
	reg := message.NewRegistry(nil)
	message.MustRegister[struct{ T any }](reg, "tree.Stored.v1")
	if _, err := reg.Decode("tree.Stored.v1", []byte(`{"T":`+deep(2*message.MaxDepth)+`}`)); err != nil {
		t.Errorf("a stored payload nested %d deep: %v", 2*message.MaxDepth, err)
	}
}
