package message_test

import (
	"testing"

	"github.com/sagaflow/sagaflow/message"
)

type userNote struct {
	Text string `json:"text"`
}

type ownNote struct {
	Text string `json:"text"`
}

// TestRecordTypesAreEncodedWithoutHTMLEscaping: with the JSON codec a type
// registered with RegisterRecord is encoded by recordjson (no HTML
// escaping), a type registered with Register by encoding/json (which
// escapes <, > and &), and both decode to what was encoded. With another
// codec the record type goes through that codec too.
func TestRecordTypesAreEncodedWithoutHTMLEscaping(t *testing.T) {
	reg := message.NewRegistry(nil)
	if err := message.Register[userNote](reg, "test.UserNote.v1"); err != nil {
		t.Fatal(err)
	}
	if err := message.RegisterRecord[ownNote](reg, "test.OwnNote.v1"); err != nil {
		t.Fatal(err)
	}
	if err := message.RegisterRecord[ownNote](reg, "test.OwnNote.v1"); err != nil {
		t.Fatalf("registering the same record twice: %v; want a no-op", err)
	}
	if err := message.RegisterRecord[ownNote](reg, "test.OtherNote.v1"); err == nil {
		t.Fatal("the record type registered under a second name; want an error")
	}
	const text = "a<b&c>d"
	cases := []struct {
		v    any
		want string
	}{
		{&userNote{Text: text}, `{"text":"a\u003cb\u0026c\u003ed"}`},
		{&ownNote{Text: text}, `{"text":"a<b&c>d"}`},
	}
	for _, c := range cases {
		name, payload, err := reg.Encode(c.v)
		if err != nil {
			t.Fatalf("encode %T: %v", c.v, err)
		}
		if string(payload) != c.want {
			t.Errorf("%s payload = %s, want %s", name, payload, c.want)
		}
		got, err := reg.Decode(name, payload)
		if err != nil {
			t.Fatalf("decode %s: %v", name, err)
		}
		if g := got.(interface{ text() string }).text(); g != text {
			t.Errorf("%s decodes to %q, want %q", name, g, text)
		}
	}

	other := message.NewRegistry(escapingCodec{})
	if err := message.RegisterRecord[ownNote](other, "test.OwnNote.v1"); err != nil {
		t.Fatal(err)
	}
	if _, payload, err := other.Encode(&ownNote{Text: text}); err != nil || string(payload) != `{"text":"a\u003cb\u0026c\u003ed"}` {
		t.Errorf("record payload with another codec = %s, %v; want that codec's bytes", payload, err)
	}
}

func (n *userNote) text() string { return n.Text }
func (n *ownNote) text() string  { return n.Text }

// escapingCodec is a codec other than message.JSON (encoding/json's
// bytes, HTML escaped).
type escapingCodec struct{ message.JSON }
