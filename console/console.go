// Package console is mxgate's web console for administrators: a login
// against the [admin] users file, server-side sessions with CSRF tokens,
// and pages for the dashboard (live charts from the tracking database),
// the queue, the quarantine and message tracking. Every action goes
// through package admin, as the command line's do, with the admin's name
// in the mainlog. Pages are rendered on the server; the little script
// there is (the charts, confirmations) and the styles are files served
// from the binary, so the pages run under a Content-Security-Policy of
// default-src 'self'.
package console

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"mxgate/admin"
	"mxgate/auth"
	"mxgate/mainlog"
	"mxgate/spool"
	"mxgate/tracking"
)

// Options configure the console; config has checked them.
type Options struct {
	// Users is the admin users file: "name:hash" lines (bcrypt or
	// argon2id), read again when it changes.
	Users string
	// SessionTimeout ends a session idle that long.
	SessionTimeout time.Duration
	// Queue is the spool the console administers (with the daemon's
	// event bus, so tracking sees the actions); its User and Reason are
	// set per request to the admin acting and the reason they gave.
	Queue *admin.Queue
	// Tracking is the message tracking database; nil: tracking is off,
	// and the dashboard and tracking pages say so.
	Tracking *tracking.Store
	// Deliver makes a delivery attempt at a message made due (the
	// daemon's queue runner); "deliver now" and a release call it.
	Deliver func(spool.ID)
	Log     *mainlog.Logger
	// Now is the clock; nil: time.Now. Tests move it to expire sessions.
	Now func() time.Time
}

// Throttle of failed logins per client IP: 5 failures within 10 minutes
// refuse that IP for 10 minutes.
const (
	maxFailures   = 5
	failureWindow = 10 * time.Minute
	blockTime     = 10 * time.Minute
	// failDelay is how long a failed login waits before its answer,
	// so guessing is slow even below the throttle.
	failDelay = time.Second
)

// Console is the web console, an http.Handler mounted at "/" of the
// admin listener.
type Console struct {
	o        Options
	users    *auth.PasswdFile
	throttle *auth.Throttle
	limit    *logLimit // of the refusals' mainlog lines
	sessions *sessions
	pages    map[string]*template.Template
	static   http.Handler
	mux      *http.ServeMux
	// sleep waits out a failed login; tests make it instant.
	sleep func(ctx context.Context, d time.Duration)
	// logins are the turns of the clients' IPs at logging in (oneLogin).
	loginMu sync.Mutex
	logins  map[string]*turn
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New builds the console; the users file must be readable and parse.
func New(o Options) (*Console, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	users, err := auth.OpenPasswdFile(o.Users, func(s string) { o.Log.Panic("admin users: " + s) })
	if err != nil {
		return nil, fmt.Errorf("admin users file: %w", err)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	c := &Console{
		o:        o,
		users:    users,
		throttle: auth.NewThrottle(maxFailures, failureWindow, blockTime),
		limit:    newLogLimit(),
		sessions: newSessions(o.SessionTimeout),
		pages:    pages,
		static:   http.StripPrefix("/static/", noDirs(sub, http.FileServerFS(sub))),
		sleep:    sleepCtx,
		logins:   map[string]*turn{},
	}
	c.routes()
	return c, nil
}

// noDirs serves the files of fsys by h, and 404 for its directories:
// what the console ships is for its pages, not for browsing.
func noDirs(fsys fs.FS, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimSuffix(r.URL.Path, "/")
		if name == "" {
			name = "."
		}
		if fi, err := fs.Stat(fsys, name); err == nil && fi.IsDir() {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// ServeHTTP serves the console's pages. The security headers
// (Content-Security-Policy, X-Frame-Options, ...) are the admin
// listener's, on every reply, but for the referrer policy: under
// "no-referrer" a browser sends "Origin: null" with the console's own
// form POSTs, which the Origin check must refuse; "same-origin" still
// sends no referrer to any other site.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Referrer-Policy", "same-origin")
	c.mux.ServeHTTP(w, r)
}

func (c *Console) routes() {
	m := http.NewServeMux()
	m.Handle("GET /static/", c.static)
	m.HandleFunc("GET /login", c.loginPage)
	m.HandleFunc("POST /login", c.login)
	m.HandleFunc("POST /logout", c.post(c.logout))

	m.HandleFunc("GET /{$}", c.get(c.dashboard))
	m.HandleFunc("GET /api/stats", c.get(c.apiStats))

	m.HandleFunc("GET /queue", c.get(c.queueList))
	m.HandleFunc("GET /queue/{id}", c.get(c.queueMessage))
	m.HandleFunc("POST /queue/{id}/{op}", c.post(c.queueOp))

	m.HandleFunc("GET /quarantine", c.get(c.quarantineList))
	m.HandleFunc("GET /quarantine/{id}", c.get(c.quarantineMessage))
	m.HandleFunc("POST /quarantine/{id}/{op}", c.post(c.quarantineOp))

	m.HandleFunc("GET /tracking", c.get(c.trackingSearch))
	m.HandleFunc("GET /tracking/message", c.get(c.trackingMessage))
	c.mux = m
}

// clientIP is the address the request came from, as the throttle and the
// mainlog name it.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// queue is the admin's handle on the spool, acting as user.
func (c *Console) queue(user string) *admin.Queue {
	q := *c.o.Queue
	q.User = user
	return &q
}
