package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"mxgate/admin"
)

// pageNames are the templates/NAME.html pages, each rendered inside
// templates/layout.html.
var pageNames = []string{"login", "dashboard", "queue", "queue_message", "quarantine", "quarantine_message", "tracking", "tracking_message", "error"}

var funcs = template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Format("2006-01-02 15:04:05")
	},
	"age":    func(d time.Duration) string { return strings.TrimSpace(admin.FormatAge(d)) },
	"size":   func(n int64) string { return strings.TrimSpace(admin.FormatSize(n)) },
	"join":   strings.Join,
	"sender": func(s string) string { return "<" + s + ">" },
	"score":  func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"key":    messageKey,
}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// page is what the layout gets: the session's user and CSRF token (for
// the logout form and the <meta> scripts read), the nav's current entry,
// the flash of the last action and the page's own data.
type page struct {
	Title, Nav      string
	User, CSRF      string
	Flash, FlashErr string
	Script          string // a script of static/ the page needs
	Data            any
}

// render writes the page name; data is the page's own.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	p := page{Title: title, Nav: strings.SplitN(name, "_", 2)[0], Data: data}
	if ss := current(r); ss != nil {
		p.User, p.CSRF = ss.user, ss.csrf
		p.Flash, p.FlashErr = c.sessions.takeFlash(ss)
	}
	if name == "dashboard" {
		p.Script = "dashboard.js"
	}
	var b bytes.Buffer
	if err := c.pages[name].Execute(&b, p); err != nil {
		c.o.Log.Panic(fmt.Sprintf("console: rendering %s: %v", name, err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// fail shows an error page with status.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.render(w, r, status, "error", http.StatusText(status), msg)
}
