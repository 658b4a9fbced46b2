package message_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sagaflow/sagaflow/message"
)

// reservedV3 is the current shape of a test event: v1 had "qty", v2
// renamed it to "quantity", v3 added "unit".
type reservedV3 struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
	Unit     string `json:"unit"`
}

func upcastRegistry(t *testing.T) *message.Registry {
	t.Helper()
	r := message.NewRegistry(nil)
	message.MustRegister[reservedV3](r, "inventory.Reserved.v3")
	v1to2 := func(old json.RawMessage) (json.RawMessage, error) {
		var v1 struct {
			SKU string `json:"sku"`
			Qty int    `json:"qty"`
		}
		if err := json.Unmarshal(old, &v1); err != nil {
			return nil, err
		}
		return json.Marshal(map[string]any{"sku": v1.SKU, "quantity": v1.Qty})
	}
	v2to3 := func(old json.RawMessage) (json.RawMessage, error) {
		var m map[string]any
		if err := json.Unmarshal(old, &m); err != nil {
			return nil, err
		}
		m["unit"] = "piece"
		return json.Marshal(m)
	}
	if err := message.Upcast(r, "inventory.Reserved", 1, v1to2); err != nil {
		t.Fatal(err)
	}
	if err := message.Upcast(r, "inventory.Reserved", 2, v2to3); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestUpcastChains(t *testing.T) {
	r := upcastRegistry(t)
	cases := []struct {
		typeName, payload string
		want              reservedV3
	}{
		{"inventory.Reserved.v1", `{"sku":"A","qty":2}`, reservedV3{SKU: "A", Quantity: 2, Unit: "piece"}},
		{"inventory.Reserved.v2", `{"sku":"B","quantity":3}`, reservedV3{SKU: "B", Quantity: 3, Unit: "piece"}},
		{"inventory.Reserved.v3", `{"sku":"C","quantity":4,"unit":"kg"}`, reservedV3{SKU: "C", Quantity: 4, Unit: "kg"}},
	}
	for _, c := range cases {
		v, err := r.Decode(c.typeName, []byte(c.payload))
		if err != nil {
			t.Fatalf("Decode(%s): %v", c.typeName, err)
		}
		got, ok := v.(*reservedV3)
		if !ok || *got != c.want {
			t.Errorf("Decode(%s, %s) = %#v, want %#v", c.typeName, c.payload, v, c.want)
		}
	}
}

func TestUpcastErrors(t *testing.T) {
	r := upcastRegistry(t)
	message.MustRegister[struct{ A int }](r, "other.Thing.v2")
	failing := message.NewRegistry(nil)
	message.MustRegister[reservedV3](failing, "inventory.Reserved.v2")
	if err := message.Upcast(failing, "inventory.Reserved", 1, func(json.RawMessage) (json.RawMessage, error) {
		return nil, errors.New("boom")
	}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		reg      *message.Registry
		typeName string
		want     error
		mention  []string
	}{
		{r, "other.Thing.v1", message.ErrUnknownType, []string{"other.Thing.v1", "no upcaster", "v1 into v2"}},
		{r, "inventory.Reserved.v4", message.ErrUnknownType, []string{"newer", "v3"}},
		{r, "nothing.Here.v1", message.ErrUnknownType, []string{"nothing.Here"}},
		{failing, "inventory.Reserved.v1", message.ErrMalformed, []string{"upcast inventory.Reserved from v1 to v2", "boom"}},
	}
	for _, c := range cases {
		_, err := c.reg.Decode(c.typeName, []byte(`{}`))
		if !errors.Is(err, c.want) {
			t.Errorf("Decode(%s) = %v, want %v", c.typeName, err, c.want)
			continue
		}
		for _, m := range c.mention {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("Decode(%s) error %q does not mention %q", c.typeName, err, m)
			}
		}
	}
}

func TestUpcastRegistrationErrors(t *testing.T) {
	r := message.NewRegistry(nil)
	id := func(b json.RawMessage) (json.RawMessage, error) { return b, nil }
	if err := message.Upcast(r, "a.B", 1, id); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		from int
		fn   message.UpcastFunc
	}{
		{"a.B", 1, id}, // twice
		{"a.B", 0, id},
		{"", 1, id},
		{"a.B", 2, nil},
	} {
		if err := message.Upcast(r, c.name, c.from, c.fn); err == nil {
			t.Errorf("Upcast(%q, %d) succeeded, want an error", c.name, c.from)
		}
	}
}
