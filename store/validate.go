package store

import (
	"context"
	"fmt"
)

// ValidateCommit checks the parts of c every store needs: a stream name, a
// version from 1, and the IDs of its messages and timers. Stores call it
// before writing, so they all reject the same commits with the same words.
func ValidateCommit(c Commit) error {
	if c.Stream == "" {
		return fmt.Errorf("%w: empty stream name", ErrInvalidCommit)
	}
	if c.Version == 0 {
		return fmt.Errorf("%w: stream %q: version must start at 1", ErrInvalidCommit, c.Stream)
	}
	seen := make(map[string]struct{}, len(c.Handled))
	for _, id := range c.Handled {
		if id == "" {
			return fmt.Errorf("%w: stream %q v%d: empty handled message ID", ErrInvalidCommit, c.Stream, c.Version)
		}
		if _, dup := seen[id]; dup {
			return fmt.Errorf("%w: stream %q v%d: handled message %q listed twice", ErrInvalidCommit, c.Stream, c.Version, id)
		}
		seen[id] = struct{}{}
	}
	for i, m := range c.Outbox {
		if m.ID == "" {
			return fmt.Errorf("%w: stream %q v%d: outbox message %d has no ID", ErrInvalidCommit, c.Stream, c.Version, i)
		}
	}
	for i, t := range c.Timers {
		if t.ID == "" || t.DueAt.IsZero() {
			return fmt.Errorf("%w: stream %q v%d: timer %d needs an ID and a due time", ErrInvalidCommit, c.Stream, c.Version, i)
		}
	}
	return nil
}

// ValidateSnapshot checks the parts of s every store needs.
func ValidateSnapshot(s Snapshot) error {
	if s.Stream == "" {
		return fmt.Errorf("%w: snapshot: empty stream name", ErrInvalidCommit)
	}
	if s.Version == 0 {
		return fmt.Errorf("%w: snapshot of %q: version must be at least 1", ErrInvalidCommit, s.Stream)
	}
	return nil
}

// CheckAppend is what every store checks before it takes a commit: that it
// is open (ErrClosed), that ctx has not ended, and ValidateCommit.
func CheckAppend(ctx context.Context, closed bool, c Commit) error {
	if closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return ValidateCommit(c)
}
