package console

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/transport"
)

// deadLetterLimit is how many dead letters the page shows.
const deadLetterLimit = 500

// deadLettersView is the data of the dead-letter page.
type deadLettersView struct {
	Letters []transport.DeadLetter
	Limit   int
	// Queue and Type are the filter.
	Queue, Type string
	// Flash reports the last replay ("replayed", "gone") and its ID.
	Flash, FlashID string
}

func (c *Console) handleDeadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v := deadLettersView{Limit: deadLetterLimit, Queue: strings.TrimSpace(q.Get("queue")), Type: strings.TrimSpace(q.Get("type"))}
	if f := q.Get("replayed"); f != "" {
		v.Flash, v.FlashID = "replayed", f
	} else if f := q.Get("gone"); f != "" {
		v.Flash, v.FlashID = "gone", f
	}
	letters, err := c.eng.DeadLetters(r.Context(), engine.DeadLetterFilter{Queue: v.Queue, Type: v.Type, Limit: deadLetterLimit})
	if err != nil {
		c.renderError(w, r, statusOf(err), fmt.Errorf("list dead letters: %w", err))
		return
	}
	v.Letters = letters
	c.render(w, r, http.StatusOK, "deadletters", "layout", c.newPage("Dead letters", "deadletters", v))
}

// handleReplay replays one dead letter and goes back to the list (with
// its filter), which says whether it was replayed or was no longer there.
// The engine logs the replay.
func (c *Console) handleReplay(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	res, err := c.eng.ReplayDeadLetters(r.Context(), []string{id})
	if err != nil {
		c.renderError(w, r, statusOf(err), fmt.Errorf("replay dead letter %s: %w", id, err))
		return
	}
	back := url.Values{}
	if slices.Contains(res.Done, id) {
		back.Set("replayed", id)
	} else {
		back.Set("gone", id)
	}
	for _, k := range []string{"queue", "type"} { // the page's filter, from the form
		if v := r.PostFormValue(k); v != "" {
			back.Set(k, v)
		}
	}
	http.Redirect(w, r, c.cfg.base+"/deadletters?"+back.Encode(), http.StatusSeeOther)
}
