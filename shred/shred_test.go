package shred_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/shred"
	"github.com/sagaflow/sagaflow/store"
	"github.com/sagaflow/sagaflow/store/embedded"
)

type registered struct {
	Customer string   `json:"customer" sagaflow:"subject"`
	Name     string   `json:"name" sagaflow:"personal"`
	Email    *string  `json:"email,omitempty" sagaflow:"personal"`
	Born     int      `json:"born" sagaflow:"personal"`
	Phones   []string `json:"phones" sagaflow:"personal"`
	Plan     string   `json:"plan"`
	Comment  string   `json:"comment"`
}

type noted struct {
	Note   string `json:"note" sagaflow:"personal"`
	Amount int    `json:"amount"`
}

type plain struct {
	A string `json:"a"`
}

func setup(t testing.TB, opts ...shred.Option) (*shred.Shredder, store.Store, *message.Registry) {
	t.Helper()
	st, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	reg := message.NewRegistry(nil)
	message.MustRegister[registered](reg, "crm.Registered.v1")
	message.MustRegister[noted](reg, "crm.Noted.v1")
	message.MustRegister[plain](reg, "crm.Plain.v1")
	opts = append([]shred.Option{shred.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)
	return shred.New(st, reg, opts...), st, reg
}

func envelopeOf(t testing.TB, reg *message.Registry, v any) message.Envelope {
	t.Helper()
	env, err := reg.New(message.KindEvent, "agg-1", v)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func sealed(t testing.TB, s *shred.Shredder, reg *message.Registry, v any, subject string) message.Envelope {
	t.Helper()
	e := envelopeOf(t, reg, v)
	if err := s.Seal(context.Background(), &e, subject); err != nil {
		t.Fatalf("Seal(%T): %v", v, err)
	}
	return e
}

// opened opens e and decodes it.
func opened(t *testing.T, s *shred.Shredder, reg *message.Registry, e message.Envelope) (any, string) {
	t.Helper()
	payload, subject, err := s.Open(context.Background(), e)
	if err != nil {
		t.Fatalf("Open(%s): %v", e.Type, err)
	}
	v, err := reg.Decode(e.Type, payload)
	if err != nil {
		t.Fatalf("decode opened %s %s: %v", e.Type, payload, err)
	}
	return v, subject
}

func alice() *registered {
	email := "alice@example.org"
	return &registered{Customer: "cust-alice", Name: "Alice Liddell", Email: &email, Born: 1852,
		Phones: []string{"+44 1865 000000"}, Plan: "gold", Comment: "<b>VIP</b> & friend"}
}

func TestSealOpenForget(t *testing.T) {
	s, _, reg := setup(t)
	ctx := context.Background()
	in := alice()
	e := sealed(t, s, reg, in, "agg-1")
	for _, secret := range []string{"Alice Liddell", "alice@example.org", "1852", "+44 1865"} {
		if strings.Contains(string(e.Payload), secret) {
			t.Errorf("sealed payload holds %q: %s", secret, e.Payload)
		}
	}
	orig := envelopeOf(t, reg, in)
	var before, after map[string]json.RawMessage
	if err := json.Unmarshal(orig.Payload, &before); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(e.Payload, &after); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"customer", "plan", "comment"} {
		if string(before[f]) != string(after[f]) {
			t.Errorf("sealing changed plain field %s: %s, was %s", f, after[f], before[f])
		}
	}
	if got := s.SealedFor(e); got != "cust-alice" {
		t.Errorf("SealedFor = %q, want the subject field's value cust-alice", got)
	}
	v, subject := opened(t, s, reg, e)
	if !reflect.DeepEqual(v, in) || subject != "cust-alice" {
		t.Fatalf("opened = %+v (subject %q), want %+v (cust-alice)", v, subject, in)
	}

	// A payload of the same subject sealed later, and another subject's.
	e2 := sealed(t, s, reg, &noted{Note: "called about the rabbit", Amount: 5}, "cust-alice")
	e3 := sealed(t, s, reg, &noted{Note: "Bob's note", Amount: 7}, "cust-bob")
	if err := s.Forget(ctx, "cust-alice"); err != nil {
		t.Fatal(err)
	}
	v, subject = opened(t, s, reg, e)
	want := &registered{Customer: "cust-alice", Name: shred.Redacted, Email: ptr(shred.Redacted), Plan: "gold", Comment: in.Comment}
	if !reflect.DeepEqual(v, want) || subject != "" {
		t.Errorf("after Forget: %+v (subject %q), want %+v (no subject)", v, subject, want)
	}
	if v, _ := opened(t, s, reg, e2); *v.(*noted) != (noted{Note: shred.Redacted, Amount: 5}) {
		t.Errorf("after Forget: %+v, want the note redacted and the amount kept", v)
	}
	if v, _ := opened(t, s, reg, e3); *v.(*noted) != (noted{Note: "Bob's note", Amount: 7}) {
		t.Errorf("another subject's payload after Forget: %+v, want it intact", v)
	}

	// The subject comes back: a new key, new data readable, old still gone.
	e4 := sealed(t, s, reg, &noted{Note: "back again", Amount: 1}, "cust-alice")
	if v, _ := opened(t, s, reg, e4); v.(*noted).Note != "back again" {
		t.Errorf("new data of a returning subject: %+v", v)
	}
	if v, _ := opened(t, s, reg, e2); v.(*noted).Note != shred.Redacted {
		t.Errorf("old data after the subject came back: %+v, want redacted", v)
	}
}

func ptr(s string) *string { return &s }

func TestSealLeavesOthersAlone(t *testing.T) {
	s, _, reg := setup(t)
	// No personal fields: bytes and headers unchanged.
	e := envelopeOf(t, reg, &plain{A: "x"})
	before := string(e.Payload)
	if err := s.Seal(context.Background(), &e, "agg"); err != nil || string(e.Payload) != before || e.Headers != nil {
		t.Errorf("Seal(plain) = %v, payload %s, headers %v; want it untouched", err, e.Payload, e.Headers)
	}
	// A value that looks sealed: in a plain field it stays as is; in a
	// personal field it is sealed like any other value.
	fake := "sagaflow:sealed:v1:s:Y3VzdA:0011223344556677:AAAA"
	in := &registered{Customer: "c", Name: fake, Comment: fake}
	got, _ := opened(t, s, reg, sealed(t, s, reg, in, "agg"))
	if g := got.(*registered); g.Name != fake || g.Comment != fake {
		t.Errorf("look-alike values came back as %+v", g)
	}
	// Without a subject field value the default subject is used.
	e = sealed(t, s, reg, &registered{Name: "n"}, "agg-7")
	if s.SealedFor(e) != "agg-7" {
		t.Errorf("SealedFor = %q, want the default subject agg-7", s.SealedFor(e))
	}
	// A type without personal fields needs no subject; one with them does.
	e = envelopeOf(t, reg, &noted{Note: "n"})
	if err := s.Seal(context.Background(), &e, ""); !errors.Is(err, store.ErrInvalidKey) {
		t.Errorf("Seal without a subject = %v, want ErrInvalidKey", err)
	}
}

func TestOpenRefusesTampering(t *testing.T) {
	s, _, reg := setup(t)
	e := sealed(t, s, reg, alice(), "agg")
	var m map[string]json.RawMessage
	if err := json.Unmarshal(e.Payload, &m); err != nil {
		t.Fatal(err)
	}
	swapped := e.Clone()
	m2 := map[string]json.RawMessage{}
	for k, v := range m {
		m2[k] = v
	}
	m2["name"], m2["email"] = m["email"], m["name"]
	swapped.Payload, _ = json.Marshal(m2)

	flipped := e.Clone()
	raw := string(m["name"])
	m2 = map[string]json.RawMessage{}
	for k, v := range m {
		m2[k] = v
	}
	// Change a character well inside the ciphertext (every bit of it is
	// data there, unlike the last character's).
	i := strings.LastIndexByte(raw, ':') + 10
	repl := byte('A')
	if raw[i] == 'A' {
		repl = 'B'
	}
	m2["name"] = json.RawMessage(raw[:i] + string(repl) + raw[i+1:])
	flipped.Payload, _ = json.Marshal(m2)

	unsealedListed := e.Clone()
	unsealedListed.SetHeader(shred.HeaderSealed, "plan")

	for name, bad := range map[string]message.Envelope{"fields swapped": swapped, "ciphertext changed": flipped, "plain field listed": unsealedListed} {
		if _, _, err := s.Open(context.Background(), bad); !errors.Is(err, message.ErrMalformed) {
			t.Errorf("%s: Open = %v, want ErrMalformed", name, err)
		}
	}
}

func TestCheck(t *testing.T) {
	type ok struct {
		S string `sagaflow:"subject"`
		P int    `sagaflow:"personal"`
	}
	type unknownTag struct {
		P string `sagaflow:"secret"`
	}
	type hidden struct {
		P string `json:"-" sagaflow:"personal"`
	}
	type subjectNotString struct {
		S int `sagaflow:"subject"`
	}
	type twoSubjects struct {
		A string `sagaflow:"subject"`
		B string `sagaflow:"subject"`
	}
	type unexported struct {
		p string `sagaflow:"personal"`
	}
	if err := shred.Check(reflect.TypeFor[ok]()); err != nil {
		t.Errorf("Check(ok) = %v", err)
	}
	for _, c := range []struct {
		t       reflect.Type
		mention string
	}{
		{reflect.TypeFor[unknownTag](), "secret"},
		{reflect.TypeFor[hidden](), "not encoded"},
		{reflect.TypeFor[subjectNotString](), "want a string"},
		{reflect.TypeFor[twoSubjects](), "two subject fields"},
		{reflect.TypeFor[unexported](), "not encoded"},
		{reflect.TypeFor[int](), "not a struct"},
	} {
		if err := shred.Check(c.t); err == nil || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("Check(%v) = %v, want an error mentioning %q", c.t, err, c.mention)
		}
	}
	_ = unexported{p: ""}
}

func TestSealedState(t *testing.T) {
	s, _, reg := setup(t)
	ctx := context.Background()
	sealed(t, s, reg, &noted{Note: "a"}, "s-a")
	sealed(t, s, reg, &noted{Note: "b"}, "s-b")
	subjects := []string{"s-a", "s-b"}
	state := []byte(`{"names":["Alice","Bob"]}`)
	box, err := s.SealState(ctx, subjects, state)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(box), "Alice") {
		t.Fatalf("sealed state holds the plaintext: %s", box)
	}
	if got, err := s.OpenState(ctx, subjects, box); err != nil || string(got) != string(state) {
		t.Fatalf("OpenState = %s, %v; want %s", got, err, state)
	}
	if _, err := s.SealState(ctx, []string{"s-b", "s-a"}, state); err == nil {
		t.Error("SealState with unsorted subjects succeeded")
	}
	if _, err := s.SealState(ctx, []string{"s-a", "s-none"}, state); !errors.Is(err, shred.ErrForgotten) {
		t.Errorf("SealState with a subject without a key = %v, want ErrForgotten", err)
	}
	if err := s.Forget(ctx, "s-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenState(ctx, subjects, box); !errors.Is(err, shred.ErrForgotten) {
		t.Errorf("OpenState after forgetting one subject = %v, want ErrForgotten", err)
	}
}

// TestKeyCacheTTL: a second process sharing the store keeps using a
// cached key until the TTL runs out, then reads the fields redacted.
func TestKeyCacheTTL(t *testing.T) {
	a, st, reg := setup(t)
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	b := shred.New(st, reg, shred.WithClock(clock), shred.WithKeyCacheTTL(time.Minute))
	e := sealed(t, a, reg, &noted{Note: "secret note"}, "s-ttl")
	if v, _ := opened(t, b, reg, e); v.(*noted).Note != "secret note" {
		t.Fatalf("b opened %+v", v)
	}
	if err := a.Forget(context.Background(), "s-ttl"); err != nil {
		t.Fatal(err)
	}
	if v, _ := opened(t, a, reg, e); v.(*noted).Note != shred.Redacted {
		t.Errorf("the forgetting shredder still reads %+v", v)
	}
	if v, _ := opened(t, b, reg, e); v.(*noted).Note != "secret note" {
		t.Errorf("within the TTL the other shredder reads %+v, want its cached key still used", v)
	}
	now.Add(int64(time.Minute + time.Second))
	if v, _ := opened(t, b, reg, e); v.(*noted).Note != shred.Redacted {
		t.Errorf("after the TTL the other shredder reads %+v, want redacted", v)
	}
}

// FuzzOpen: whatever a stored or received envelope holds, Open returns
// an error or a payload, never panics; a payload with nothing sealed comes
// back as it was.
func FuzzOpen(f *testing.F) {
	s, _, reg := setup(f)
	good := sealed(f, s, reg, alice(), "agg")
	f.Add([]byte(good.Payload), good.Header(shred.HeaderSealed), good.Header(shred.HeaderSubject))
	f.Add([]byte(`{"name":"sagaflow:sealed:v1:s:eA:00:AAAA"}`), "name", "x")
	f.Add([]byte(`[1,2]`), "", "")
	f.Fuzz(func(t *testing.T, payload []byte, sealedList, subject string) {
		e := message.Envelope{ID: "m", Type: "crm.Registered.v1", Payload: payload}
		if sealedList != "" {
			e.SetHeader(shred.HeaderSealed, sealedList)
			e.SetHeader(shred.HeaderSubject, subject)
		}
		out, _, err := s.Open(context.Background(), e)
		if sealedList == "" && (err != nil || string(out) != string(payload)) {
			t.Fatalf("Open without the header changed the payload: %q -> %q, %v", payload, out, err)
		}
	})
}

// BenchmarkSeal and BenchmarkOpen measure one event with four personal
// fields, its subject's key cached.
func BenchmarkSeal(b *testing.B) {
	s, _, reg := setup(b)
	e := envelopeOf(b, reg, alice())
	for b.Loop() {
		c := e
		c.Headers = nil
		if err := s.Seal(context.Background(), &c, "agg"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	s, _, reg := setup(b)
	e := sealed(b, s, reg, alice(), "agg")
	for b.Loop() {
		if _, _, err := s.Open(context.Background(), e); err != nil {
			b.Fatal(err)
		}
	}
}
