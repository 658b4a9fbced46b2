package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrInvalidKey: a subject key is malformed (empty subject or ID, a secret
// that is not an AES-128, -192 or -256 key).
var ErrInvalidKey = errors.New("invalid subject key")

// MaxSubjectBytes bounds a subject's name.
const MaxSubjectBytes = 512

// SubjectKey is the encryption key of one data subject (a person whose
// personal data the events carry). Crypto-shredding deletes it: the
// subject's encrypted fields can then no longer be read. Keys are kept
// apart from commits, never inside a commit document.
type SubjectKey struct {
	// Subject names the data subject, for example a customer ID.
	Subject string `json:"subject"`
	// ID tells this key from a later key of the same subject (made after
	// the first was deleted).
	ID string `json:"id"`
	// Secret is the AES key: 16, 24 or 32 bytes.
	Secret []byte `json:"secret"`
	// CreatedAt is when the key was made.
	CreatedAt time.Time `json:"created_at"`
}

// Keys keeps one encryption key per data subject, durably.
type Keys interface {
	// CreateKey stores k as its subject's key unless the subject has one
	// already; it returns the subject's key: k, or the one stored first
	// when another writer won the race. ErrInvalidKey for a malformed k.
	CreateKey(ctx context.Context, k SubjectKey) (SubjectKey, error)
	// LoadKey returns the subject's key (ok false when it has none, or it
	// was deleted).
	LoadKey(ctx context.Context, subject string) (k SubjectKey, ok bool, err error)
	// DeleteKey deletes the subject's key durably; it returns once no
	// later LoadKey can return it. Deleting a missing key is no error.
	DeleteKey(ctx context.Context, subject string) error
}

// ValidateKey reports what is wrong with k (wrapping ErrInvalidKey).
func ValidateKey(k SubjectKey) error {
	if err := ValidateSubject(k.Subject); err != nil {
		return err
	}
	if k.ID == "" {
		return fmt.Errorf("%w: key of %q has no ID", ErrInvalidKey, k.Subject)
	}
	switch len(k.Secret) {
	case 16, 24, 32:
	default:
		return fmt.Errorf("%w: key of %q is %d bytes, want 16, 24 or 32", ErrInvalidKey, k.Subject, len(k.Secret))
	}
	return nil
}

// ValidateSubject reports an empty or overlong subject name.
func ValidateSubject(subject string) error {
	if subject == "" {
		return fmt.Errorf("%w: empty subject", ErrInvalidKey)
	}
	if len(subject) > MaxSubjectBytes {
		return fmt.Errorf("%w: subject is %d bytes, at most %d", ErrInvalidKey, len(subject), MaxSubjectBytes)
	}
	return nil
}
