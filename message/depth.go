package message

import (
	"fmt"
	"io"
)

// MaxDepth is the deepest nesting of JSON arrays and objects that a
// payload from outside may have (64 levels; business messages need a
// handful). Input nested deeper is refused with ErrTooDeep before it is
// parsed, so hostile input such as a million '[' costs a byte scan that
// stops at the limit, not a parse. The limit is checked where input
// arrives: on a whole envelope (MaxEnvelopeDepth) and, in the engine, on
// an admin API body. Registry.Decode does not check it: the engine's own
// records wrap a payload further down (a saga's stored transition holds
// its input and state), and they must always decode.
const MaxDepth = 64

// MaxEnvelopeDepth is the nesting UnmarshalEnvelope accepts: MaxDepth for
// the payload, one level for the envelope, and two for the deepest of the
// engine's own wrappers (an event routed to a saga travels whole, envelope
// and all, inside the payload of another), so that a payload within
// MaxDepth is accepted however the engine passes it on.
const MaxEnvelopeDepth = MaxDepth + 3

// CheckDepth reports, without allocating, whether the JSON text data nests
// arrays and objects more than limit levels deep. It scans the bytes once,
// skipping strings, and stops at the first byte past the limit with an
// error wrapping ErrTooDeep that names the limit and the offset. It checks
// nothing else: data that is not valid JSON is left for the decoder to
// refuse.
func CheckDepth(data []byte, limit int) error {
	s := depthScanner{limit: limit}
	return s.scan(data)
}

// LimitDepth returns a reader that reads from r and fails, with the error
// CheckDepth gives, as soon as the JSON text read so far nests more than
// limit levels deep. Put it between a stream and a json.Decoder to refuse
// deep nesting while reading, before the decoder has buffered the rest.
func LimitDepth(r io.Reader, limit int) io.Reader {
	return &depthReader{r: r, s: depthScanner{limit: limit}}
}

type depthReader struct {
	r   io.Reader
	s   depthScanner
	err error
}

func (d *depthReader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n, err := d.r.Read(p)
	if serr := d.s.scan(p[:n]); serr != nil {
		d.err = serr
		return 0, serr
	}
	return n, err
}

// depthScanner follows the nesting of JSON text across chunks.
type depthScanner struct {
	limit, depth      int
	offset            int64
	inString, escaped bool
}

func (s *depthScanner) scan(data []byte) error {
	for i, c := range data {
		if s.inString {
			switch {
			case s.escaped:
				s.escaped = false
			case c == '\\':
				s.escaped = true
			case c == '"':
				s.inString = false
			}
			continue
		}
		switch c {
		case '"':
			s.inString = true
		case '[', '{':
			s.depth++
			if s.depth > s.limit {
				return fmt.Errorf("%w: more than %d levels of arrays and objects (at byte %d)", ErrTooDeep, s.limit, s.offset+int64(i))
			}
		case ']', '}':
			s.depth--
		}
	}
	s.offset += int64(len(data))
	return nil
}
