package console

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/projection"
	"github.com/sagaflow/sagaflow/readmodel"
)

// docList is one ListReadModel call the fake got.
type docList struct {
	Model, After string
	Limit        int
}

func (f *fakeEngine) Projections() ([]projection.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.projErr != nil {
		return nil, f.projErr
	}
	return slices.Clone(f.projections), nil
}

func (f *fakeEngine) ListReadModel(_ context.Context, model, after string, limit int) ([]readmodel.Doc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.docLists = append(f.docLists, docList{Model: model, After: after, Limit: limit})
	docs, ok := f.models[model]
	if !ok {
		return nil, fmt.Errorf("%w: %q", engine.ErrUnknownProjection, model)
	}
	var out []readmodel.Doc
	for _, d := range docs {
		if d.Key > after && len(out) < limit {
			out = append(out, d)
		}
	}
	return out, nil
}

// withReadModels gives f the email campaign's report projection and one
// more, with two report documents; one body holds markup to escape.
func withReadModels(f *fakeEngine) *fakeEngine {
	f.projections = []projection.Status{
		{Name: "campaigns.reports", Queue: "sagaflow.projection.campaigns.reports", Events: []string{"campaigns.EmailSent.v1", "campaigns.EmailOpened.v1"}, State: "running", Applied: 42, Skipped: 3},
		{Name: "customers.directory", Queue: "sagaflow.projection.customers.directory", Events: []string{"customers.Registered.v1"}, State: "rebuilding",
			Rebuild: &projection.RebuildStatus{Running: true, Done: 2, Total: 9}},
	}
	f.models = map[string][]readmodel.Doc{
		"campaigns.reports": {
			{Model: "campaigns.reports", Key: "c-1", Version: 7, Stream: "campaigns.Campaign/c-1", Seq: 12, UpdatedAt: at(900),
				Body: []byte(`{"sent":3,"opened":1}`)},
			{Model: "campaigns.reports", Key: "c-2", Version: 1, Stream: "campaigns.Campaign/c-2", Seq: 1, UpdatedAt: at(950),
				Body: []byte(`{"subject":"<script>alert(1)</script>","from":"Ada \u003cada@example.com\u003e"}`)},
		},
		"customers.directory": {},
	}
	return f
}

func TestReadModelsPageListsTheProjections(t *testing.T) {
	f := withReadModels(newFake())
	res, body := serve(t, testConsole(f), "GET", "/console/readmodels", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d:\n%s", res.StatusCode, body)
	}
	for _, want := range []string{
		`<a href="/console/readmodels/campaigns.reports">campaigns.reports</a>`,
		`<a href="/console/readmodels/customers.directory">customers.directory</a>`,
		`<span class="badge state-running">running</span>`,
		`rebuilding 2/9 streams`,
		`campaigns.EmailSent.v1, campaigns.EmailOpened.v1`,
		`<td class="num">42</td>`,
		`2 projections`,
		// the nav link, active on this page
		`<a href="/console/readmodels" class="active">Read models</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("read-models page lacks %s", want)
		}
	}

	// Every page has the nav link.
	_, sagas := serve(t, testConsole(f), "GET", "/console/", nil)
	if !strings.Contains(sagas, `<a href="/console/readmodels">Read models</a>`) {
		t.Errorf("the sagas page lacks the nav link to the read models")
	}

	// No projections: the page says so.
	_, empty := serve(t, testConsole(newFake()), "GET", "/console/readmodels", nil)
	if !strings.Contains(empty, "No projections are registered on this engine.") {
		t.Errorf("empty read-models page should say there are no projections:\n%s", empty)
	}
}

func TestReadModelPageAndRows(t *testing.T) {
	cases := []struct {
		name, path string
		layout     bool     // the whole page, or the rows alone
		want       []string // in the body
		absent     []string
	}{
		{"page", "/console/readmodels/campaigns.reports", true, []string{
			`<h1 class="mono">campaigns.reports</h1>`,
			`data-refresh="/console/readmodels/campaigns.reports/rows"`,
			`<td class="mono">c-1</td>`, `<td class="num">7</td>`, `campaigns.Campaign/c-1 #12`,
			"<pre class=\"json\">{\n  &#34;sent&#34;: 3,\n  &#34;opened&#34;: 1\n}</pre>",
			`<td class="mono">c-2</td>`,
			`&#34;subject&#34;: &#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;`,
			`&#34;from&#34;: &#34;Ada &lt;ada@example.com&gt;&#34;`,
			`2 documents on this page`,
		}, []string{`<script>alert(1)`}},
		{"rows", "/console/readmodels/campaigns.reports/rows", false, []string{
			`<table class="grid readmodel-docs card">`,
			`<td class="mono">c-1</td>`, `<td class="mono">c-2</td>`,
			"<pre class=\"json\">{\n  &#34;sent&#34;: 3,\n  &#34;opened&#34;: 1\n}</pre>",
			`&#34;subject&#34;: &#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;`,
		}, []string{`<script>alert(1)`, "<html", `data-refresh`}},
		{"a full page links to the next one", "/console/readmodels/campaigns.reports?limit=1", true, []string{
			`<td class="mono">c-1</td>`,
			`data-refresh="/console/readmodels/campaigns.reports/rows?limit=1"`,
			`href="/console/readmodels/campaigns.reports?after=c-1&amp;limit=1"`,
		}, []string{`<td class="mono">c-2</td>`}},
		{"a later page is not refreshed", "/console/readmodels/campaigns.reports?after=c-1", true, []string{
			`<td class="mono">c-2</td>`, `href="/console/readmodels/campaigns.reports">First page</a>`,
		}, []string{`<td class="mono">c-1</td>`, `data-refresh="`}},
		{"an empty model", "/console/readmodels/customers.directory", true, []string{
			`No documents in this read model yet.`,
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, body := serve(t, testConsole(withReadModels(newFake())), "GET", c.path, nil)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d:\n%s", res.StatusCode, body)
			}
			if got := strings.Contains(body, "<html"); got != c.layout {
				t.Errorf("layout present: %v, want %v", got, c.layout)
			}
			for _, want := range c.want {
				if !strings.Contains(body, want) {
					t.Errorf("%s lacks %s", c.path, want)
				}
			}
			for _, no := range c.absent {
				if strings.Contains(body, no) {
					t.Errorf("%s should not contain %s", c.path, no)
				}
			}
		})
	}
}

// The live refresh shows the same rows as the page and follows changes.
func TestReadModelRowsMatchThePageAndFollowChanges(t *testing.T) {
	f := withReadModels(newFake())
	c := testConsole(f)
	_, page := serve(t, c, "GET", "/console/readmodels/campaigns.reports", nil)
	_, rows := serve(t, c, "GET", "/console/readmodels/campaigns.reports/rows", nil)
	rows = strings.TrimSpace(rows)
	if rows == "" || !strings.Contains(page, rows) {
		t.Errorf("the rows partial is not the table the page shows:\npartial:\n%s\npage:\n%s", rows, page)
	}
	f.mu.Lock()
	f.models["campaigns.reports"] = append(f.models["campaigns.reports"], readmodel.Doc{Model: "campaigns.reports", Key: "c-3", Version: 1, Body: []byte(`{"sent":1}`)})
	f.mu.Unlock()
	_, rows = serve(t, c, "GET", "/console/readmodels/campaigns.reports/rows", nil)
	if !strings.Contains(rows, `<td class="mono">c-3</td>`) || !strings.Contains(rows, "3 documents") {
		t.Errorf("the rows partial should show the new document c-3:\n%s", rows)
	}
	want := []docList{{"campaigns.reports", "", readModelLimit}, {"campaigns.reports", "", readModelLimit}, {"campaigns.reports", "", readModelLimit}}
	if !slices.Equal(f.docLists, want) {
		t.Errorf("engine got %+v, want %+v", f.docLists, want)
	}
}

func TestReadModelAnswers4xx(t *testing.T) {
	cases := []struct {
		path   string
		status int
		want   string
	}{
		{"/console/readmodels/nope", http.StatusNotFound, `unknown projection: &#34;nope&#34;`},
		{"/console/readmodels/nope/rows", http.StatusNotFound, `unknown projection: &#34;nope&#34;`},
		{"/console/readmodels/campaigns.reports?limit=0", http.StatusBadRequest, `limit &#34;0&#34;: want a whole number from 1 to 10000`},
		{"/console/readmodels/campaigns.reports/rows?limit=many", http.StatusBadRequest, `limit &#34;many&#34;: want a whole number from 1 to 10000`},
		{"/console/readmodels/campaigns.reports?limit=10001", http.StatusBadRequest, `limit &#34;10001&#34;`},
		{"/console/readmodels/campaigns.reports?sort=desc", http.StatusBadRequest, `unknown query parameter &#34;sort&#34;: want after or limit`},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			f := withReadModels(newFake())
			res, body := serve(t, testConsole(f), "GET", c.path, nil)
			if res.StatusCode != c.status || !strings.Contains(body, c.want) {
				t.Errorf("status %d, want %d with %q in:\n%s", res.StatusCode, c.status, c.want, body)
			}
			if c.status == http.StatusBadRequest && len(f.docLists) != 0 {
				t.Errorf("a bad query reached the engine: %+v", f.docLists)
			}
		})
	}
}

func TestReadModelsEngineErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{engine.ErrNotRunning, http.StatusServiceUnavailable},
		{fmt.Errorf("boom: disk on fire"), http.StatusInternalServerError},
	} {
		f := newFake()
		f.projErr = c.err
		res, body := serve(t, testConsole(f), "GET", "/console/readmodels", nil)
		if res.StatusCode != c.want || !strings.Contains(body, c.err.Error()) {
			t.Errorf("engine error %v: status %d, want %d with the error in the page", c.err, res.StatusCode, c.want)
		}
	}
}

func TestUnescapeHTML(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"a":"plain"}`, `{"a":"plain"}`},
		{`{"n":"Ada \u003cLovelace\u003e \u0026 co"}`, `{"n":"Ada <Lovelace> & co"}`},
		{`{"n":"\u003C\u003E"}`, `{"n":"<>"}`},
		// a literal backslash before u003c is not an escape of <
		{`{"p":"C:\\u003c"}`, `{"p":"C:\\u003c"}`},
		{`{"q":"\"\u00e9\n"}`, `{"q":"\"\u00e9\n"}`},
		{`{"short":"\u003"}`, `{"short":"\u003"}`},
	} {
		if got := unescapeHTML(c.in); got != c.want {
			t.Errorf("unescapeHTML(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}
