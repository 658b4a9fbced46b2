package console

import (
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"

	"github.com/sagaflow/sagaflow/workflows"
)

// pageSets are the template sets: each is the layout plus one page file,
// which defines "content" (and partials such as "rows" or "live").
var pageSets = []string{"list", "saga", "deadletters", "readmodels", "readmodel", "error"}

// parseTemplates parses the embedded templates. They are part of the
// binary, so an error is a programming error found by the first test.
func parseTemplates() map[string]*template.Template {
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	sets := make(map[string]*template.Template, len(pageSets))
	for _, name := range pageSets {
		t := template.Must(layout.Clone())
		sets[name] = template.Must(t.ParseFS(templateFS, "templates/"+name+".html"))
	}
	return sets
}

// funcs are the helpers the templates use.
var funcs = template.FuncMap{
	// pct formats a percentage for a style attribute.
	"pct": func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) + "%" },
	// ago says how long before now t was ("12s ago").
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return ""
		}
		d := now.Sub(t)
		if d < time.Second {
			return "just now"
		}
		return FormatDuration(d.Truncate(time.Second)) + " ago"
	},
	// stamp is a full time for tooltips and tables.
	"stamp": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Local().Format("2006-01-02 15:04:05.000 MST")
	},
	// clock is the time of day.
	"clock": func(t time.Time) string { return t.Local().Format("15:04:05.000") },
	"dur":   FormatDuration,
	// ms turns milliseconds into a duration.
	"ms": func(n int64) time.Duration { return time.Duration(n) * time.Millisecond },
	// since is t's offset from start as "+1.25s".
	"since": func(start, t time.Time) string { return "+" + FormatDuration(t.Sub(start)) },
	// statusLabel is the badge text of a status.
	"statusLabel": func(s workflows.Status) string { return strings.ReplaceAll(string(s), "_", " ") },
	// eventClass groups history events for colouring.
	"eventClass": func(ev string) string {
		switch {
		case strings.HasSuffix(ev, "failed"), ev == workflows.EventNeedsAttention:
			return "ev-bad"
		case strings.HasSuffix(ev, "retry_scheduled"):
			return "ev-retry"
		case strings.HasPrefix(ev, "compensation."), ev == workflows.EventCompensated:
			return "ev-comp"
		case strings.HasSuffix(ev, "succeeded"), ev == workflows.EventCompleted:
			return "ev-good"
		}
		return "ev-plain"
	},
	// json indents raw JSON for display.
	"json": prettyJSON,
	// list makes a slice of its arguments (the page-size choices).
	"list": func(v ...int) []int { return v },
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return fmt.Sprintf("%d %s", n, one)
		}
		return fmt.Sprintf("%d %s", n, many)
	},
	"short": func(id string) string {
		if len(id) <= 13 {
			return id
		}
		return id[:8] + "…" + id[len(id)-4:]
	},
}
