package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sagaflow/sagaflow/store"
)

// keyFor returns a subject key whose secret is distinct per (subject, id)
// and holds bytes a text encoding would mangle.
func keyFor(subject, id string) store.SubjectKey {
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(len(subject)*31 + len(id)*7 + i*13 + int(id[0]))
	}
	secret[0], secret[1] = 0x00, 0xff
	return store.SubjectKey{Subject: subject, ID: id, Secret: secret, CreatedAt: at(time.Duration(len(id)) * time.Second)}
}

func (c comparer) key(d *diffs, path string, got, want store.SubjectKey) {
	eq(d, path+".Subject", got.Subject, want.Subject)
	eq(d, path+".ID", got.ID, want.ID)
	if !bytes.Equal(got.Secret, want.Secret) {
		d.add(path+".Secret", fmt.Sprintf("%x", got.Secret), fmt.Sprintf("%x", want.Secret))
	}
	c.time(d, path+".CreatedAt", got.CreatedAt, want.CreatedAt)
}

// requireKey checks LoadKey(subject) against want (nil: none).
func (s *suite) requireKey(t *testing.T, st store.Store, subject string, want *store.SubjectKey) {
	t.Helper()
	got, ok, err := st.LoadKey(testContext(t), subject)
	if err != nil {
		t.Fatalf("LoadKey(%s): %v", subject, err)
	}
	var d diffs
	eq(&d, "ok", ok, want != nil)
	if ok && want != nil {
		s.cmp.key(&d, "key", got, *want)
	}
	report(t, "LoadKey("+subject+")", d)
}

func mustCreateKey(t *testing.T, st store.Store, k store.SubjectKey) store.SubjectKey {
	t.Helper()
	got, err := st.CreateKey(testContext(t), k)
	if err != nil {
		t.Fatalf("CreateKey(%s): %v", k.Subject, err)
	}
	return got
}

// testKeys: a subject's key comes back byte for byte; the first key
// created wins (also among racing writers); a deleted key is gone, also
// after a restart, and leaves other subjects' keys alone; a new key can
// be made after a delete; malformed keys are refused.
func (s *suite) testKeys(t *testing.T) {
	st := s.newStore(t)
	ctx := testContext(t)
	alice, bob := keyFor("customer-alice", "k1"), keyFor("customer-bob", "k1")
	s.requireKey(t, st, alice.Subject, nil)

	var d diffs
	s.cmp.key(&d, "created", mustCreateKey(t, st, alice), alice)
	s.cmp.key(&d, "created again", mustCreateKey(t, st, keyFor(alice.Subject, "k2")), alice)
	report(t, "CreateKey", d)
	mustCreateKey(t, st, bob)
	s.requireKey(t, st, alice.Subject, &alice)
	s.requireKey(t, st, bob.Subject, &bob)

	if err := st.DeleteKey(ctx, alice.Subject); err != nil {
		t.Fatalf("DeleteKey(%s): %v", alice.Subject, err)
	}
	s.requireKey(t, st, alice.Subject, nil)
	s.requireKey(t, st, bob.Subject, &bob)
	if err := st.DeleteKey(ctx, alice.Subject); err != nil {
		t.Fatalf("DeleteKey(%s) of a deleted key: %v, want nil", alice.Subject, err)
	}
	if err := st.DeleteKey(ctx, "never-seen"); err != nil {
		t.Fatalf("DeleteKey of a missing key: %v, want nil", err)
	}
	alice2 := keyFor(alice.Subject, "k3")
	d = diffs{}
	s.cmp.key(&d, "recreated", mustCreateKey(t, st, alice2), alice2)
	report(t, "CreateKey after DeleteKey", d)

	// Racing creators of one subject all get the one stored key.
	const writers = 8
	var wg sync.WaitGroup
	got := make([]store.SubjectKey, writers)
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = st.CreateKey(ctx, keyFor("customer-race", fmt.Sprintf("w%d", i)))
		}()
	}
	wg.Wait()
	stored, ok, err := st.LoadKey(ctx, "customer-race")
	if err != nil || !ok {
		t.Fatalf("LoadKey(customer-race) = %t, %v after %d racing creates", ok, err, writers)
	}
	for i := range writers {
		if errs[i] != nil {
			t.Fatalf("racing CreateKey %d: %v", i, errs[i])
		}
		if got[i].ID != stored.ID || !bytes.Equal(got[i].Secret, stored.Secret) {
			t.Fatalf("racing CreateKey %d returned key %s, the stored key is %s", i, got[i].ID, stored.ID)
		}
	}

	bad := []store.SubjectKey{
		{ID: "k", Secret: make([]byte, 32)},
		{Subject: strings.Repeat("s", store.MaxSubjectBytes+1), ID: "k", Secret: make([]byte, 32)},
		{Subject: "s", Secret: make([]byte, 32)},
		{Subject: "s", ID: "k", Secret: make([]byte, 31)},
	}
	for _, k := range bad {
		if _, err := st.CreateKey(ctx, k); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("CreateKey(subject %.20q, id %q, %d-byte secret) = %v, want ErrInvalidKey", k.Subject, k.ID, len(k.Secret), err)
		}
	}
	s.requireKey(t, st, "s", nil)
	if err := st.DeleteKey(ctx, ""); !errors.Is(err, store.ErrInvalidKey) {
		t.Errorf("DeleteKey(\"\") = %v, want ErrInvalidKey", err)
	}

	if s.f.Reopen == nil {
		return
	}
	if err := st.DeleteKey(ctx, bob.Subject); err != nil {
		t.Fatalf("DeleteKey(%s): %v", bob.Subject, err)
	}
	st = s.reopen(t, st)
	s.requireKey(t, st, bob.Subject, nil)
	s.requireKey(t, st, alice.Subject, &alice2)
}
