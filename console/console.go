package console

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sagaflow/sagaflow/engine"
	"github.com/sagaflow/sagaflow/projection"
	"github.com/sagaflow/sagaflow/readmodel"
	"github.com/sagaflow/sagaflow/transport"
	"github.com/sagaflow/sagaflow/workflows"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// DefaultBasePath is where the console expects to be mounted.
const DefaultBasePath = "/console"

// DefaultRefresh is how often the pages fetch fresh content.
const DefaultRefresh = 2 * time.Second

// backend is what the console uses of the engine; *engine.Engine
// implements it. Tests give it fakes.
type backend interface {
	ListSagas(ctx context.Context, req engine.ListRequest) ([]engine.SagaSummary, string, error)
	GetSaga(ctx context.Context, id string) (engine.Saga, error)
	Workflows() []workflows.Workflow
	DeadLetters(ctx context.Context, f engine.DeadLetterFilter) ([]transport.DeadLetter, error)
	ReplayDeadLetters(ctx context.Context, ids []string) (engine.DeadLetterResult, error)
	Projections() ([]projection.Status, error)
	ListReadModel(ctx context.Context, model, after string, limit int) ([]readmodel.Doc, error)
}

// Option configures the console.
type Option func(*config)

type config struct {
	base    string
	refresh time.Duration
	logger  *slog.Logger
	now     func() time.Time
}

// WithBasePath sets the path the console is mounted at (default
// DefaultBasePath). Links and the static files are served under it.
func WithBasePath(p string) Option {
	return func(c *config) { c.base = "/" + strings.Trim(p, "/") }
}

// WithRefresh sets how often the pages refresh their live parts (default
// DefaultRefresh; below 250ms means 250ms).
func WithRefresh(d time.Duration) Option { return func(c *config) { c.refresh = d } }

// WithLogger sets where the console logs the errors it answers with a 500
// (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithClock sets the console's clock (default time.Now); tests use it to
// render stable pages.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// Console serves the web console. Make one with New.
type Console struct {
	cfg   config
	eng   backend
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// New returns the console of e as an http.Handler that serves the paths
// under its base path (see WithBasePath). Mount it on the admin server
// with e.HandleAdmin(DefaultBasePath+"/", console.New(e)).
func New(e *engine.Engine, opts ...Option) *Console {
	return newConsole(e, opts...)
}

func newConsole(b backend, opts ...Option) *Console {
	cfg := config{base: DefaultBasePath, refresh: DefaultRefresh, logger: slog.Default(), now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.base == "/" {
		cfg.base = ""
	}
	cfg.refresh = max(cfg.refresh, 250*time.Millisecond)
	c := &Console{cfg: cfg, eng: b, pages: parseTemplates()}
	c.routes()
	return c
}

// ServeHTTP implements http.Handler.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mux.ServeHTTP(w, r)
}

func (c *Console) routes() {
	base := c.cfg.base
	mux := http.NewServeMux()
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(fmt.Sprintf("console: embedded static files: %v", err)) // the embed is checked at build time
	}
	files := http.StripPrefix(base+"/static/", http.FileServerFS(static))
	mux.Handle("GET "+base+"/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET "+base+"/{$}", c.handleList)
	mux.HandleFunc("GET "+base+"/sagas", c.handleListRows)
	mux.HandleFunc("GET "+base+"/sagas/{id}", c.handleSaga)
	mux.HandleFunc("GET "+base+"/sagas/{id}/live", c.handleSagaLive)
	mux.HandleFunc("GET "+base+"/deadletters", c.handleDeadLetters)
	csrf := http.NewCrossOriginProtection()
	mux.Handle("POST "+base+"/deadletters/{id}/replay", csrf.Handler(http.HandlerFunc(c.handleReplay)))
	mux.HandleFunc("GET "+base+"/readmodels", c.handleReadModels)
	mux.HandleFunc("GET "+base+"/readmodels/{model}", c.handleReadModel)
	mux.HandleFunc("GET "+base+"/readmodels/{model}/rows", c.handleReadModelRows)
	mux.HandleFunc(base+"/", func(w http.ResponseWriter, r *http.Request) {
		c.renderError(w, r, http.StatusNotFound, fmt.Errorf("no console page at %s", r.URL.Path))
	})
	if base != "" {
		mux.Handle("GET "+base, http.RedirectHandler(base+"/", http.StatusMovedPermanently))
	}
	c.mux = mux
}

// page is what every template gets.
type page struct {
	Base    string
	Title   string
	Nav     string
	Refresh int64 // milliseconds
	Now     time.Time
	Data    any
}

func (c *Console) newPage(title, nav string, data any) page {
	return page{Base: c.cfg.base, Title: title, Nav: nav, Refresh: c.cfg.refresh.Milliseconds(), Now: c.cfg.now(), Data: data}
}

// render executes template name of page set into a buffer first, so that
// a template error becomes a clean 500 and not half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, set, name string, p page) {
	var buf bytes.Buffer
	t, ok := c.pages[set]
	if !ok {
		c.fail(w, r, fmt.Errorf("console: no template set %q", set))
		return
	}
	if err := t.ExecuteTemplate(&buf, name, p); err != nil {
		c.fail(w, r, fmt.Errorf("console: render %s/%s: %w", set, name, err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// fail answers 500 and logs err (the one place it is reported).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	c.cfg.logger.Error("console page failed", "path", r.URL.Path, "err", err)
	http.Error(w, "internal error: "+err.Error(), http.StatusInternalServerError)
}

// errorView is the data of the error page.
type errorView struct {
	Status  int
	Heading string
	Message string
}

func (c *Console) renderError(w http.ResponseWriter, r *http.Request, status int, err error) {
	if status >= 500 && status != http.StatusServiceUnavailable {
		c.cfg.logger.Error("console page failed", "path", r.URL.Path, "err", err)
	}
	v := errorView{Status: status, Heading: http.StatusText(status), Message: err.Error()}
	c.render(w, r, status, "error", "layout", c.newPage(v.Heading, "", v))
}

// statusOf maps an engine error to an HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, engine.ErrSagaNotFound), errors.Is(err, engine.ErrUnknownWorkflow), errors.Is(err, engine.ErrDeadLetterNotFound):
		return http.StatusNotFound
	case errors.Is(err, engine.ErrInvalidRequest):
		return http.StatusBadRequest
	case errors.Is(err, engine.ErrNotRunning), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// --- the sagas list ---

// allStatuses are the statuses in the order the filter shows them.
var allStatuses = []workflows.Status{
	workflows.StatusRunning, workflows.StatusCompensating, workflows.StatusNeedsAttention,
	workflows.StatusCompleted, workflows.StatusCompensated, workflows.StatusCancelled,
}

// listView is the data of the sagas list and its live rows.
type listView struct {
	Statuses      []statusFilter
	Workflows     []string
	Workflow      string
	CorrelationID string
	// Since is the "created within" choice ("" for any time).
	Since  string
	Sinces []sinceChoice
	Limit  int
	After  string
	Sagas  []engine.SagaSummary
	Next   string
	// RowsURL (the live refresh), FirstURL and NextURL (paging) keep the
	// filter.
	RowsURL, FirstURL, NextURL string
	// Live is false on later pages: a page after a cursor is not refreshed.
	Live bool
}

type statusFilter struct {
	Status  workflows.Status
	Checked bool
}

// sinceChoice is an entry of the "created within" filter.
type sinceChoice struct {
	Value, Label string
}

// sinceChoices are the "created within" choices; the value is a duration.
var sinceChoices = []sinceChoice{
	{"5m", "last 5 minutes"}, {"1h", "last hour"}, {"24h", "last 24 hours"}, {"168h", "last 7 days"},
}

// listRequest reads the list's filters from the query string; now anchors
// the "created within" filter.
func listRequest(q url.Values, now time.Time) (engine.ListRequest, error) {
	req := engine.ListRequest{
		Workflow: strings.TrimSpace(q.Get("workflow")), CorrelationID: strings.TrimSpace(q.Get("correlation_id")),
		After: q.Get("after"), Limit: 50,
	}
	if s := q.Get("since"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return req, fmt.Errorf("%w: since %q: want a positive duration such as 1h", engine.ErrInvalidRequest, s)
		}
		req.CreatedFrom = now.Add(-d)
	}
	for _, v := range q["status"] {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			st := workflows.Status(s)
			if !st.Valid() {
				return req, fmt.Errorf("%w: status %q: want one of %s", engine.ErrInvalidRequest, s, joinStatuses(allStatuses))
			}
			if !slices.Contains(req.Status, st) {
				req.Status = append(req.Status, st)
			}
		}
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return req, fmt.Errorf("%w: limit %q: want a whole number from 1 to 1000", engine.ErrInvalidRequest, l)
		}
		req.Limit = n
	}
	return req, nil
}

func joinStatuses(sts []workflows.Status) string {
	s := make([]string, len(sts))
	for i, st := range sts {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}

func (c *Console) listView(r *http.Request) (listView, error) {
	q := r.URL.Query()
	if id := strings.TrimSpace(q.Get("id")); id != "" {
		return listView{}, errJump{id: id}
	}
	req, err := listRequest(q, c.cfg.now())
	if err != nil {
		return listView{}, err
	}
	sagas, next, err := c.eng.ListSagas(r.Context(), req)
	if err != nil {
		return listView{}, fmt.Errorf("list sagas: %w", err)
	}
	v := listView{
		Workflow: req.Workflow, CorrelationID: req.CorrelationID, Since: q.Get("since"), Sinces: sinceChoices,
		Limit: req.Limit, After: req.After, Sagas: sagas, Next: next, Live: req.After == "",
	}
	for _, st := range allStatuses {
		v.Statuses = append(v.Statuses, statusFilter{Status: st, Checked: slices.Contains(req.Status, st)})
	}
	for _, wf := range c.eng.Workflows() {
		if !slices.Contains(v.Workflows, wf.Name()) {
			v.Workflows = append(v.Workflows, wf.Name())
		}
	}
	filter := url.Values{}
	for _, st := range req.Status {
		filter.Add("status", string(st))
	}
	if req.Workflow != "" {
		filter.Set("workflow", req.Workflow)
	}
	if req.CorrelationID != "" {
		filter.Set("correlation_id", req.CorrelationID)
	}
	if v.Since != "" {
		filter.Set("since", v.Since)
	}
	if req.Limit != 50 {
		filter.Set("limit", strconv.Itoa(req.Limit))
	}
	v.RowsURL = c.cfg.base + "/sagas?" + filter.Encode()
	v.FirstURL = c.cfg.base + "/?" + filter.Encode()
	if next != "" {
		filter.Set("after", next)
		v.NextURL = c.cfg.base + "/?" + filter.Encode()
	}
	return v, nil
}

// errJump asks the list handler to go to one saga's page (the ID box).
type errJump struct{ id string }

func (e errJump) Error() string { return "jump to saga " + e.id }

func (c *Console) handleList(w http.ResponseWriter, r *http.Request) {
	v, err := c.listView(r)
	var jump errJump
	if errors.As(err, &jump) {
		http.Redirect(w, r, c.cfg.base+"/sagas/"+url.PathEscape(jump.id), http.StatusSeeOther)
		return
	}
	if err != nil {
		c.renderError(w, r, statusOf(err), err)
		return
	}
	c.render(w, r, http.StatusOK, "list", "layout", c.newPage("Sagas", "sagas", v))
}

// handleListRows serves the table of the list alone, for the live refresh.
func (c *Console) handleListRows(w http.ResponseWriter, r *http.Request) {
	v, err := c.listView(r)
	if err != nil {
		c.renderError(w, r, statusOf(err), err)
		return
	}
	c.render(w, r, http.StatusOK, "list", "rows", c.newPage("Sagas", "sagas", v))
}

// --- one saga ---

// sagaView is the data of a saga's page and its live part.
type sagaView struct {
	Saga     engine.Saga
	Timeline Timeline
	// Diagram is the workflow's Mermaid text with the saga's progress; ""
	// when the workflow is not registered here.
	Diagram  string
	Steps    int
	Attempts int
	Retries  int
	Duration time.Duration
	Input    string
	State    string
	// Final is true once the saga is finished: the page stops refreshing.
	Final bool
}

func (c *Console) sagaView(ctx context.Context, id string) (sagaView, error) {
	s, err := c.eng.GetSaga(ctx, id)
	if err != nil {
		return sagaView{}, fmt.Errorf("get saga: %w", err) // err names the saga
	}
	now := c.cfg.now()
	v := sagaView{Saga: s, Final: s.Status.Terminal(), Input: prettyJSON(s.Input), State: prettyJSON(s.State)}
	v.Timeline = BuildTimeline(s.History, s.Status.Terminal() || s.Status == workflows.StatusNeedsAttention, now)
	for _, row := range v.Timeline.Rows {
		v.Attempts += len(row.Bars)
		for _, b := range row.Bars {
			if b.Outcome == OutcomeRetry {
				v.Retries++
			}
		}
	}
	end := s.UpdatedAt
	if !v.Final {
		end = now
	}
	v.Duration = max(end.Sub(s.CreatedAt), 0)
	for _, wf := range c.eng.Workflows() {
		if wf.Name() == s.Workflow && wf.Version() == s.Version {
			v.Diagram = Diagram(wf, s.Status, s.Step, s.History)
			v.Steps = len(wf.Steps())
		}
	}
	return v, nil
}

func (c *Console) handleSaga(w http.ResponseWriter, r *http.Request) {
	v, err := c.sagaView(r.Context(), r.PathValue("id"))
	if err != nil {
		c.renderError(w, r, statusOf(err), err)
		return
	}
	c.render(w, r, http.StatusOK, "saga", "layout", c.newPage("Saga "+v.Saga.ID, "sagas", v))
}

// handleSagaLive serves the live part of a saga's page.
func (c *Console) handleSagaLive(w http.ResponseWriter, r *http.Request) {
	v, err := c.sagaView(r.Context(), r.PathValue("id"))
	if err != nil {
		c.renderError(w, r, statusOf(err), err)
		return
	}
	c.render(w, r, http.StatusOK, "saga", "live", c.newPage("Saga "+v.Saga.ID, "sagas", v))
}

// prettyJSON indents raw JSON for display ("" for none).
func prettyJSON(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}
