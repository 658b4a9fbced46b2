package shred

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// ErrForgotten: a subject whose key a sealed state needs has been
// forgotten (or has a newer key); the state cannot be opened.
var ErrForgotten = errors.New("subject forgotten")

// MaxStateSubjects bounds the subjects one sealed state may depend on.
const MaxStateSubjects = 100

// stateAAD binds a sealed state to its use.
var stateAAD = []byte("sagaflow/shred/state/v1")

// sealedState is what SealState returns, as JSON.
type sealedState struct {
	// KeyIDs are the IDs of the subjects' keys, in the subjects' order.
	KeyIDs []string `json:"kids"`
	// Data is nonce ++ AES-GCM ciphertext.
	Data []byte `json:"data"`
}

// SealState encrypts state (an aggregate snapshot that holds personal
// data of subjects) under a key derived from every subject's key, so that
// forgetting any one of them makes it unreadable. Every subject must have
// a key; subjects must be sorted and distinct, at most MaxStateSubjects.
func (s *Shredder) SealState(ctx context.Context, subjects []string, state []byte) ([]byte, error) {
	aead, kids, err := s.stateKey(ctx, subjects, nil)
	if err != nil {
		return nil, fmt.Errorf("seal state: %w", err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal state: nonce: %w", err)
	}
	out, err := json.Marshal(sealedState{KeyIDs: kids, Data: aead.Seal(nonce, nonce, state, stateAAD)})
	if err != nil {
		return nil, fmt.Errorf("seal state: %w", err)
	}
	return out, nil
}

// OpenState decrypts a state SealState made for subjects. It fails with
// ErrForgotten when one of the subjects was forgotten since.
func (s *Shredder) OpenState(ctx context.Context, subjects []string, sealed []byte) ([]byte, error) {
	var st sealedState
	if err := json.Unmarshal(sealed, &st); err != nil {
		return nil, fmt.Errorf("open state: %w", err)
	}
	if len(st.KeyIDs) != len(subjects) {
		return nil, fmt.Errorf("open state: sealed under %d keys, given %d subjects", len(st.KeyIDs), len(subjects))
	}
	aead, _, err := s.stateKey(ctx, subjects, st.KeyIDs)
	if err != nil {
		return nil, fmt.Errorf("open state: %w", err)
	}
	n := aead.NonceSize()
	if len(st.Data) < n {
		return nil, errors.New("open state: ciphertext too short")
	}
	plain, err := aead.Open(nil, st.Data[:n], st.Data[n:], stateAAD)
	if err != nil {
		return nil, fmt.Errorf("open state: %w", err)
	}
	return plain, nil
}

// stateKey derives the AES-256-GCM key of a state from the subjects'
// keys (HKDF-SHA256 over all of them). With want, each subject's key must have the given ID.
func (s *Shredder) stateKey(ctx context.Context, subjects, want []string) (cipher.AEAD, []string, error) {
	if len(subjects) == 0 || len(subjects) > MaxStateSubjects {
		return nil, nil, fmt.Errorf("%d subjects, want 1 to %d", len(subjects), MaxStateSubjects)
	}
	if !slices.IsSorted(subjects) || len(slices.Compact(slices.Clone(subjects))) != len(subjects) {
		return nil, nil, errors.New("subjects must be sorted and distinct")
	}
	var ikm []byte
	kids := make([]string, len(subjects))
	for i, subject := range subjects {
		k, err := s.key(ctx, subject, false)
		if err != nil {
			return nil, nil, err
		}
		if k == nil || (want != nil && k.key.ID != want[i]) {
			return nil, nil, fmt.Errorf("%w: %q", ErrForgotten, subject)
		}
		kids[i] = k.key.ID
		for _, part := range [][]byte{[]byte(subject), []byte(k.key.ID), k.key.Secret} {
			ikm = binary.BigEndian.AppendUint64(ikm, uint64(len(part)))
			ikm = append(ikm, part...)
		}
	}
	key, err := hkdf.Key(sha256.New, ikm, nil, string(stateAAD), 32)
	if err != nil {
		return nil, nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, err
	}
	return aead, kids, nil
}
