package actors

import (
	"errors"
	"testing"

	"github.com/sagaflow/sagaflow/message"
)

func TestAdmit(t *testing.T) {
	withReplyTo := map[string]string{message.HeaderReplyTo: "sagaflow"}
	cases := []struct {
		name      string
		env       message.Envelope
		sagaQueue bool
		ok        bool
	}{
		{"saga command with reply-to", message.Envelope{Kind: message.KindCommand, SagaID: "s", Headers: withReplyTo}, false, true},
		{"saga command without reply-to", message.Envelope{Kind: message.KindCommand, SagaID: "s"}, false, false},
		{"command outside sagas", message.Envelope{Kind: message.KindCommand}, false, true},
		{"control message to the saga queue", message.Envelope{Kind: message.KindCommand, SagaID: "s"}, true, true},
		{"reply", message.Envelope{Kind: message.KindReply, SagaID: "s", CausationID: "c"}, true, true},
		{"reply without causation", message.Envelope{Kind: message.KindReply, SagaID: "s"}, true, false},
		{"reply without saga", message.Envelope{Kind: message.KindReply, CausationID: "c"}, true, false},
		{"event", message.Envelope{Kind: message.KindEvent}, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := admit(c.env, c.sagaQueue)
			if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrMissingHeader)) {
				t.Errorf("admit = %v, want ok %v (else ErrMissingHeader)", err, c.ok)
			}
		})
	}
}
