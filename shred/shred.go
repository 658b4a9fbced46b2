package shred

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/sagaflow/sagaflow/message"
	"github.com/sagaflow/sagaflow/store"
)

// Redacted is what a forgotten subject's string fields read as.
const Redacted = "[redacted]"

// sealedPrefix starts every sealed field value (a JSON string).
const sealedPrefix = "sagaflow:sealed:v1:"

// Tag values of the `sagaflow` struct tag.
const (
	tagPersonal = "personal"
	tagSubject  = "subject"
)

// Kinds of sealed fields: how they read once redacted.
const (
	kindString = "s" // "[redacted]"
	kindOther  = "j" // null, which decodes as the zero value
)

// cache bounds.
const (
	maxCachedKeys = 10_000
	maxGoneKeys   = 100_000
)

// Shredder seals and opens payloads and forgets subjects. It is safe for
// concurrent use. Make one with New.
type Shredder struct {
	keys store.Keys
	reg  *message.Registry
	log  *slog.Logger
	now  func() time.Time
	ttl  time.Duration

	plans sync.Map // reflect.Type -> planResult

	mu   sync.Mutex
	live map[string]cachedKey // subject -> its key, for ttl
	gone map[string]struct{}  // subject + "\x00" + key ID of deleted keys
}

type cachedKey struct {
	key     store.SubjectKey
	aead    cipher.AEAD
	expires time.Time
}

// Option configures a Shredder.
type Option func(*Shredder)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Shredder) { s.log = l } }

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Shredder) { s.now = now } }

// WithKeyCacheTTL sets how long a key read from the store is used without
// asking the store again (default 30s). Forget on this Shredder drops its
// copy at once; another process that shares the store sees a Forget after
// at most this long. Zero or negative: do not cache.
func WithKeyCacheTTL(d time.Duration) Option { return func(s *Shredder) { s.ttl = d } }

// New returns a Shredder that keeps subject keys in keys and finds the Go
// types of payloads in reg.
func New(keys store.Keys, reg *message.Registry, opts ...Option) *Shredder {
	s := &Shredder{
		keys: keys, reg: reg, log: slog.Default(), now: time.Now, ttl: 30 * time.Second,
		live: make(map[string]cachedKey), gone: make(map[string]struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// field is one personal field of a type.
type field struct {
	name string // JSON name
	kind string // kindString or kindOther
}

// plan is what Seal needs to know of a type.
type plan struct {
	personal []field
	subject  string // JSON name of the subject field ("" when none)
}

type planResult struct {
	p   *plan
	err error
}

// Check reports struct tags of t that cannot work: an unknown sagaflow
// tag, a personal or subject field hidden from JSON, a subject field that
// is not a string, two subject fields, a field both personal and subject.
// The engine checks every event type of an aggregate when it is
// registered.
func Check(t reflect.Type) error {
	_, err := makePlan(t)
	return err
}

func (s *Shredder) plan(t reflect.Type) (*plan, error) {
	if r, ok := s.plans.Load(t); ok {
		pr := r.(planResult)
		return pr.p, pr.err
	}
	p, err := makePlan(t)
	s.plans.Store(t, planResult{p: p, err: err})
	return p, err
}

func makePlan(t reflect.Type) (*plan, error) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("shred: %v is not a struct type", t)
	}
	p := &plan{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("sagaflow")
		if !ok {
			continue
		}
		jsonName, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if jsonName == "" {
			jsonName = f.Name
		}
		where := fmt.Sprintf("%v.%s", t, f.Name)
		if jsonName == "-" || !f.IsExported() {
			return nil, fmt.Errorf("shred: %s is tagged sagaflow:%q but is not encoded in JSON", where, tag)
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch tag {
		case tagPersonal:
			kind := kindOther
			if ft.Kind() == reflect.String {
				kind = kindString
			}
			p.personal = append(p.personal, field{name: jsonName, kind: kind})
		case tagSubject:
			if f.Type.Kind() != reflect.String {
				return nil, fmt.Errorf("shred: subject field %s is a %v, want a string", where, f.Type)
			}
			if p.subject != "" {
				return nil, fmt.Errorf("shred: %v has two subject fields (%s and %s)", t, p.subject, jsonName)
			}
			p.subject = jsonName
		default:
			return nil, fmt.Errorf("shred: %s has tag sagaflow:%q; known: %q, %q", where, tag, tagPersonal, tagSubject)
		}
	}
	for _, f := range p.personal {
		if f.name == p.subject {
			return nil, fmt.Errorf("shred: %v field %s is both personal and the subject", t, f.name)
		}
	}
	return p, nil
}

// Envelope headers Seal sets.
const (
	// HeaderSealed lists, comma-separated, the payload fields Seal
	// encrypted; Open touches those fields only, so a value that merely
	// looks sealed is left alone.
	HeaderSealed = "sagaflow-sealed"
	// HeaderSubject names the subject the fields were sealed for.
	HeaderSubject = "sagaflow-subject"
)

// Seal encrypts the personal fields of e's payload (of e's registered
// type): each field's JSON value is encrypted under the key of the
// payload's subject (the subject field's value, or subject when the type
// has none or it is empty) and replaced by a sealed string; the fields
// are listed in e's HeaderSealed header. The key is made and stored
// durably on the subject's first sealed payload. A payload of a type
// without personal fields is left unchanged.
func (s *Shredder) Seal(ctx context.Context, e *message.Envelope, subject string) error {
	t, ok := s.reg.TypeOf(e.Type)
	if !ok {
		return nil
	}
	p, err := s.plan(t)
	if err != nil {
		return err
	}
	if len(p.personal) == 0 {
		return nil
	}
	if e.Header(HeaderSealed) != "" {
		return fmt.Errorf("seal %s %s: already sealed", e.Type, e.ID)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(e.Payload, &m); err != nil || m == nil {
		return fmt.Errorf("seal %s: payload is not a JSON object (personal fields need the JSON codec): %v", e.Type, err)
	}
	if raw, ok := m[p.subject]; ok && p.subject != "" {
		var v string
		if err := json.Unmarshal(raw, &v); err == nil && v != "" {
			subject = v
		}
	}
	if err := store.ValidateSubject(subject); err != nil {
		return fmt.Errorf("seal %s: %w", e.Type, err)
	}
	k, err := s.key(ctx, subject, true)
	if err != nil {
		return fmt.Errorf("seal %s: %w", e.Type, err)
	}
	var sealed []string
	for _, f := range p.personal {
		raw, ok := m[f.name]
		if !ok || bytes.Equal(raw, []byte("null")) {
			continue
		}
		nonce := make([]byte, k.aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return fmt.Errorf("seal %s: nonce: %w", e.Type, err)
		}
		ct := k.aead.Seal(nonce, nonce, raw, aad(subject, k.key.ID, f.name))
		v := sealedPrefix + f.kind + ":" + base64.RawURLEncoding.EncodeToString([]byte(subject)) + ":" + k.key.ID + ":" + base64.RawStdEncoding.EncodeToString(ct)
		if m[f.name], err = json.Marshal(v); err != nil {
			return fmt.Errorf("seal %s: %w", e.Type, err)
		}
		sealed = append(sealed, f.name)
	}
	if len(sealed) == 0 {
		return nil
	}
	payload, err := encode(m)
	if err != nil {
		return fmt.Errorf("seal %s: %w", e.Type, err)
	}
	e.Payload = payload
	e.SetHeader(HeaderSealed, strings.Join(sealed, ","))
	e.SetHeader(HeaderSubject, subject)
	return nil
}

// SealedFor returns the subject e's payload was sealed for ("" when
// nothing of it is sealed).
func (s *Shredder) SealedFor(e message.Envelope) string {
	if e.Header(HeaderSealed) == "" {
		return ""
	}
	return e.Header(HeaderSubject)
}

// Open returns e's payload with the fields its HeaderSealed header lists
// decrypted, or redacted (Redacted for strings, null, which decodes as the
// zero value, otherwise) when their subject's key was deleted. subject is
// the subject whose personal data the returned payload holds in the clear
// ("" when nothing was sealed or it was redacted). A payload without the
// header comes back unchanged. A listed field that is not sealed, is
// malformed or does not decrypt under its key is an error wrapping
// message.ErrMalformed; a key store that does not answer is an error too
// (the caller tries again later).
func (s *Shredder) Open(ctx context.Context, e message.Envelope) (payload []byte, subject string, err error) {
	list := e.Header(HeaderSealed)
	if list == "" {
		return e.Payload, "", nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(e.Payload, &m); err != nil {
		return nil, "", fmt.Errorf("%w: sealed payload of %s is not a JSON object: %w", message.ErrMalformed, e.Type, err)
	}
	inClear := false
	for _, name := range strings.Split(list, ",") {
		raw, ok := m[name]
		if !ok || !isSealed(raw) {
			return nil, "", fmt.Errorf("%w: %s field %q is listed as sealed but is not", message.ErrMalformed, e.Type, name)
		}
		opened, ok, err := s.openField(ctx, name, raw)
		if err != nil {
			return nil, "", fmt.Errorf("open %s: %w", e.Type, err)
		}
		m[name], inClear = opened, inClear || ok
	}
	if payload, err = encode(m); err != nil {
		return nil, "", err
	}
	if inClear {
		subject = e.Header(HeaderSubject)
	}
	return payload, subject, nil
}

func (s *Shredder) openField(ctx context.Context, name string, raw json.RawMessage) (json.RawMessage, bool, error) {
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, false, fmt.Errorf("%w: sealed field %q: %w", message.ErrMalformed, name, err)
	}
	parts := strings.SplitN(strings.TrimPrefix(v, sealedPrefix), ":", 4)
	if len(parts) != 4 || (parts[0] != kindString && parts[0] != kindOther) {
		return nil, false, fmt.Errorf("%w: sealed field %q is not kind:subject:key:ciphertext", message.ErrMalformed, name)
	}
	subj, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, false, fmt.Errorf("%w: sealed field %q: subject: %w", message.ErrMalformed, name, err)
	}
	ct, err := base64.RawStdEncoding.DecodeString(parts[3])
	if err != nil {
		return nil, false, fmt.Errorf("%w: sealed field %q: ciphertext: %w", message.ErrMalformed, name, err)
	}
	subject, keyID := string(subj), parts[2]
	redacted := json.RawMessage("null")
	if parts[0] == kindString {
		redacted = json.RawMessage(`"` + Redacted + `"`)
	}
	if s.isGone(subject, keyID) {
		return redacted, false, nil
	}
	k, err := s.key(ctx, subject, false)
	if err != nil {
		return nil, false, fmt.Errorf("open sealed field %q: %w", name, err)
	}
	if k == nil || k.key.ID != keyID {
		s.markGone(subject, keyID)
		return redacted, false, nil
	}
	n := k.aead.NonceSize()
	if len(ct) < n {
		return nil, false, fmt.Errorf("%w: sealed field %q of subject %q: ciphertext too short", message.ErrMalformed, name, subject)
	}
	plain, err := k.aead.Open(nil, ct[:n], ct[n:], aad(subject, keyID, name))
	if err != nil {
		return nil, false, fmt.Errorf("%w: sealed field %q of subject %q does not decrypt under key %s: %w", message.ErrMalformed, name, subject, keyID, err)
	}
	return plain, true, nil
}

// Forget deletes subject's key: every field sealed under it reads as
// redacted from then on, in this process at once and in other processes
// sharing the store after at most the key cache TTL.
func (s *Shredder) Forget(ctx context.Context, subject string) error {
	if err := store.ValidateSubject(subject); err != nil {
		return err
	}
	if err := s.keys.DeleteKey(ctx, subject); err != nil {
		return fmt.Errorf("forget subject %q: %w", subject, err)
	}
	s.mu.Lock()
	if k, ok := s.live[subject]; ok {
		s.markGoneLocked(subject, k.key.ID)
		delete(s.live, subject)
	}
	s.mu.Unlock()
	s.log.Info("subject forgotten: its key is deleted", "subject", subject)
	return nil
}

// key returns subject's key, from the cache or the store; with create, it
// makes and stores one when the subject has none. Without create, a
// subject without a key gives nil.
func (s *Shredder) key(ctx context.Context, subject string, create bool) (*cachedKey, error) {
	now := s.now()
	s.mu.Lock()
	if k, ok := s.live[subject]; ok && now.Before(k.expires) {
		s.mu.Unlock()
		return &k, nil
	}
	s.mu.Unlock()
	k, found, err := s.keys.LoadKey(ctx, subject)
	if err != nil {
		return nil, err
	}
	if !found {
		if !create {
			return nil, nil
		}
		if k, err = newKey(subject, now); err != nil {
			return nil, err
		}
		if k, err = s.keys.CreateKey(ctx, k); err != nil {
			return nil, err
		}
	}
	block, err := aes.NewCipher(k.Secret)
	if err != nil {
		return nil, fmt.Errorf("key %s of %q: %w", k.ID, subject, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("key %s of %q: %w", k.ID, subject, err)
	}
	c := cachedKey{key: k, aead: aead, expires: now.Add(s.ttl)}
	if s.ttl > 0 {
		s.mu.Lock()
		if len(s.live) >= maxCachedKeys {
			clear(s.live)
		}
		s.live[subject] = c
		s.mu.Unlock()
	}
	return &c, nil
}

// isGone reports whether key keyID of subject is known to be deleted (key
// IDs are random and never come back, so this is never stale).
func (s *Shredder) isGone(subject, keyID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.gone[subject+"\x00"+keyID]
	return ok
}

func (s *Shredder) markGone(subject, keyID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.markGoneLocked(subject, keyID)
}

func (s *Shredder) markGoneLocked(subject, keyID string) {
	if len(s.gone) >= maxGoneKeys {
		clear(s.gone)
	}
	s.gone[subject+"\x00"+keyID] = struct{}{}
}

// newKey makes a random AES-256 key for subject.
func newKey(subject string, now time.Time) (store.SubjectKey, error) {
	secret := make([]byte, 32)
	id := make([]byte, 8)
	if _, err := rand.Read(secret); err != nil {
		return store.SubjectKey{}, fmt.Errorf("new key of %q: %w", subject, err)
	}
	if _, err := rand.Read(id); err != nil {
		return store.SubjectKey{}, fmt.Errorf("new key of %q: %w", subject, err)
	}
	return store.SubjectKey{Subject: subject, ID: hex.EncodeToString(id), Secret: secret, CreatedAt: now}, nil
}

// aad binds a ciphertext to its subject, key and field, so that it cannot
// be moved to another field or subject unnoticed.
func aad(subject, keyID, field string) []byte {
	return []byte("sagaflow/shred/v1\x00" + subject + "\x00" + keyID + "\x00" + field)
}

func isSealed(raw json.RawMessage) bool {
	return bytes.HasPrefix(raw, []byte(`"`+sealedPrefix))
}

// encode writes m as compact JSON without HTML escaping.
func encode(m map[string]json.RawMessage) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
