package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/projection"
	"github.com/sagaflow/sagaflow/readmodel"
)

// readModelLimit is how many documents a read-model page shows unless the
// query asks for another number.
const readModelLimit = 100

// readModelsView is the data of the read-models page.
type readModelsView struct {
	Projections []projection.Status
}

func (c *Console) handleReadModels(w http.ResponseWriter, r *http.Request) {
	ps, err := c.eng.Projections()
	if err != nil {
		c.renderError(w, r, statusOf(err), fmt.Errorf("list projections: %w", err))
		return
	}
	c.render(w, r, http.StatusOK, "readmodels", "layout", c.newPage("Read models", "readmodels", readModelsView{Projections: ps}))
}

// docRow is one document of a read model as the page shows it.
type docRow struct {
	Doc readmodel.Doc
	// Body is the document's JSON, indented, with the \u003c, \u003e and
	// \u0026 escapes Go's encoder writes shown as <, > and & (the page
	// escapes them for HTML).
	Body string
}

// readModelView is the data of one read model's page and its live rows.
type readModelView struct {
	Model string
	Limit int
	After string
	Docs  []docRow
	// RowsURL (the live refresh), FirstURL and NextURL (paging) keep the
	// limit.
	RowsURL, FirstURL, NextURL string
	// Live is false on later pages: a page after a cursor is not refreshed.
	Live bool
}

// readModelRequest reads a read-model page's query: after (a key) and
// limit (1 to readmodel.MaxListLimit). Any other parameter is an error.
func readModelRequest(q url.Values) (after string, limit int, err error) {
	for k := range q {
		if k != "after" && k != "limit" {
			return "", 0, fmt.Errorf("%w: unknown query parameter %q: want after or limit", engine.ErrInvalidRequest, k)
		}
	}
	limit = readModelLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > readmodel.MaxListLimit {
			return "", 0, fmt.Errorf("%w: limit %q: want a whole number from 1 to %d", engine.ErrInvalidRequest, l, readmodel.MaxListLimit)
		}
		limit = n
	}
	return q.Get("after"), limit, nil
}

func (c *Console) readModelView(r *http.Request) (readModelView, error) {
	model := r.PathValue("model")
	after, limit, err := readModelRequest(r.URL.Query())
	if err != nil {
		return readModelView{}, err
	}
	docs, err := c.eng.ListReadModel(r.Context(), model, after, limit)
	if err != nil {
		return readModelView{}, fmt.Errorf("list read model %s: %w", model, err)
	}
	v := readModelView{Model: model, Limit: limit, After: after, Live: after == ""}
	for _, d := range docs {
		v.Docs = append(v.Docs, docRow{Doc: d, Body: unescapeHTML(prettyJSON(d.Body))})
	}
	base := c.cfg.base + "/readmodels/" + url.PathEscape(model)
	q := url.Values{}
	if limit != readModelLimit {
		q.Set("limit", strconv.Itoa(limit))
	}
	v.RowsURL = base + "/rows?" + q.Encode()
	v.FirstURL = base + "?" + q.Encode()
	if len(docs) == limit {
		q.Set("after", docs[len(docs)-1].Key)
		v.NextURL = base + "?" + q.Encode()
	}
	v.RowsURL = strings.TrimSuffix(v.RowsURL, "?")
	v.FirstURL = strings.TrimSuffix(v.FirstURL, "?")
	return v, nil
}

func (c *Console) handleReadModel(w http.ResponseWriter, r *http.Request) {
	v, err := c.readModelView(r)
	if err != nil {
		c.renderError(w, r, readModelStatus(err), err)
		return
	}
	c.render(w, r, http.StatusOK, "readmodel", "layout", c.newPage("Read model "+v.Model, "readmodels", v))
}

// handleReadModelRows serves the documents table alone, for the live
// refresh.
func (c *Console) handleReadModelRows(w http.ResponseWriter, r *http.Request) {
	v, err := c.readModelView(r)
	if err != nil {
		c.renderError(w, r, readModelStatus(err), err)
		return
	}
	c.render(w, r, http.StatusOK, "readmodel", "rows", c.newPage("Read model "+v.Model, "readmodels", v))
}

// readModelStatus is statusOf, with an unknown projection (read model)
// as 404.
func readModelStatus(err error) int {
	if errors.Is(err, engine.ErrUnknownProjection) {
		return http.StatusNotFound
	}
	return statusOf(err)
}

// unescapeHTML turns the \u003c, \u003e and \u0026 escapes inside the
// strings of valid JSON s back into <, > and &; every other escape is
// kept as it is.
func unescapeHTML(s string) string {
	if !strings.Contains(s, `\u00`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		if i+5 < len(s) && s[i+1] == 'u' {
			switch strings.ToLower(s[i+2 : i+6]) {
			case "003c":
				b.WriteByte('<')
				i += 5
				continue
			case "003e":
				b.WriteByte('>')
				i += 5
				continue
			case "0026":
				b.WriteByte('&')
				i += 5
				continue
			}
		}
		b.WriteString(s[i : i+2]) // any other escape, such as \\ before a u
		i++
	}
	return b.String()
}
