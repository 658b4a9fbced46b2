package campaigns

import (
	"errors"

	"github.com/sagaflow/sagaflow/aggregate"
)

// AudienceService is the queue of the Audience aggregate's commands.
const AudienceService = "campaigns.audience"

// AudienceAggregate is the Audience aggregate's type name.
const AudienceAggregate = "campaigns.Audience"

// Commands of the Audience aggregate, sent by the inbox. Stream and Seq
// name the public event they come from.
type (
	// NoteRegistered records a customer's name and address.
	NoteRegistered struct {
		Name   string `json:"name"`
		Email  string `json:"email"`
		Stream string `json:"stream"`
		Seq    uint64 `json:"seq"`
	}
	// NotePermission records whether the customer allows email.
	NotePermission struct {
		Allowed bool   `json:"allowed"`
		Stream  string `json:"stream"`
		Seq     uint64 `json:"seq"`
	}
	// NoteClass records the customer's classification.
	NoteClass struct {
		Class  string `json:"class"`
		Stream string `json:"stream"`
		Seq    uint64 `json:"seq"`
	}
)

// Member is what the campaign service knows of a customer.
type Member struct {
	ID      string `json:"id"`
	Name    string `json:"name,omitempty"`
	Email   string `json:"email,omitempty"`
	Class   string `json:"class,omitempty"`
	Allowed bool   `json:"allowed"`
}

// Eligible reports whether m is in a campaign's audience: a B customer
// with an address who allows email.
func (m Member) Eligible() bool { return m.Class == "B" && m.Allowed && m.Email != "" }

// MemberChanged is the Audience's internal event: the member as it now is,
// and what changed it.
type MemberChanged struct {
	Member
	Attr   string `json:"attr"`
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
}

// AudienceMemberChanged is the public event of MemberChanged.
type AudienceMemberChanged struct {
	Member
}

// AudienceState is one customer as the campaign service knows it.
type AudienceState struct {
	Member
	// Seen is the latest sequence applied per stream and attribute.
	Seen map[string]uint64 `json:"seen,omitempty"`
}

// Audience returns the Audience aggregate.
func Audience() *aggregate.Definition[AudienceState] {
	d := aggregate.New(AudienceService, AudienceAggregate, func(id string) AudienceState { return AudienceState{Member: Member{ID: id}} })
	note := func(s AudienceState, attr, stream string, seq uint64, set func(m *Member)) ([]any, error) {
		if stream == "" || seq == 0 {
			return nil, errors.New("the source stream and sequence are required")
		}
		if s.Seen[attr+"|"+stream] >= seq {
			return nil, nil // seen (a redelivery) or older than what we have
		}
		m := s.Member
		set(&m)
		return []any{&MemberChanged{Member: m, Attr: attr, Stream: stream, Seq: seq}}, nil
	}
	aggregate.Handle(d, func(s AudienceState, c *NoteRegistered) ([]any, error) {
		return note(s, "registered", c.Stream, c.Seq, func(m *Member) { m.Name, m.Email = c.Name, c.Email })
	})
	aggregate.Handle(d, func(s AudienceState, c *NotePermission) ([]any, error) {
		return note(s, "permission", c.Stream, c.Seq, func(m *Member) { m.Allowed = c.Allowed })
	})
	aggregate.Handle(d, func(s AudienceState, c *NoteClass) ([]any, error) {
		if c.Class != "A" && c.Class != "B" && c.Class != "C" {
			return nil, errors.New("class must be A, B or C")
		}
		return note(s, "class", c.Stream, c.Seq, func(m *Member) { m.Class = c.Class })
	})
	aggregate.Apply(d, func(s AudienceState, e *MemberChanged) AudienceState {
		if s.Seen == nil {
			s.Seen = map[string]uint64{}
		}
		s.Seen[e.Attr+"|"+e.Stream] = e.Seq
		s.Member = e.Member
		return s
	})
	aggregate.Publish(d, func(e *MemberChanged) (*AudienceMemberChanged, error) {
		return &AudienceMemberChanged{Member: e.Member}, nil
	})
	return d
}
