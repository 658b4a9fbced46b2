package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/sagaflow/sagaflow/transport"
)

// deadLetterLimit is how many dead letters the page shows.
const deadLetterLimit = 500

// deadLetterBackend is the engine's dead-letter API, when the engine has
// one: list, and replay by message ID (the IDs actually replayed come
// back; an ID no longer dead-lettered is left out).
type deadLetterBackend interface {
	DeadLetters(ctx context.Context, limit int) ([]transport.DeadLetter, error)
	ReplayDeadLetters(ctx context.Context, ids []string) ([]string, error)
}

// deadLettersView is the data of the dead-letter page.
type deadLettersView struct {
	// Available is false when the engine offers no dead-letter API.
	Available bool
	Letters   []transport.DeadLetter
	Limit     int
	// Flash reports the last replay ("replayed", "gone") and its ID.
	Flash, FlashID string
}

func (c *Console) handleDeadLetters(w http.ResponseWriter, r *http.Request) {
	v := deadLettersView{Available: c.dead != nil, Limit: deadLetterLimit}
	q := r.URL.Query()
	if f := q.Get("replayed"); f != "" {
		v.Flash, v.FlashID = "replayed", f
	} else if f := q.Get("gone"); f != "" {
		v.Flash, v.FlashID = "gone", f
	}
	if c.dead != nil {
		letters, err := c.dead.DeadLetters(r.Context(), deadLetterLimit)
		if err != nil {
			c.renderError(w, r, statusOf(err), fmt.Errorf("list dead letters: %w", err))
			return
		}
		// Newest first: the one an operator came for is usually the last.
		slices.Reverse(letters)
		v.Letters = letters
	}
	c.render(w, r, http.StatusOK, "deadletters", "layout", c.newPage("Dead letters", "deadletters", v))
}

// handleReplay replays one dead letter and goes back to the list, which
// says whether it was replayed or was no longer there.
func (c *Console) handleReplay(w http.ResponseWriter, r *http.Request) {
	if c.dead == nil {
		c.renderError(w, r, http.StatusNotImplemented, errors.New("this engine has no dead-letter API"))
		return
	}
	id := r.PathValue("id")
	moved, err := c.dead.ReplayDeadLetters(r.Context(), []string{id})
	if err != nil {
		c.renderError(w, r, statusOf(err), fmt.Errorf("replay dead letter %s: %w", id, err))
		return
	}
	c.cfg.logger.Info("dead letter replayed from the console", "message_id", id, "replayed", len(moved) == 1)
	flash := "gone"
	if slices.Contains(moved, id) {
		flash = "replayed"
	}
	http.Redirect(w, r, c.cfg.base+"/deadletters?"+url.Values{flash: {id}}.Encode(), http.StatusSeeOther)
}
