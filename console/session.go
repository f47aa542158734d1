package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Cookie names: the session, and the login form's double-submit token
// (before there is a session to hold one). Over TLS they carry the
// __Host- prefix (cookieName).
const (
	sessionCookie = "mxgate_session"
	loginCookie   = "mxgate_login_csrf"
)

// maxSessions bounds the sessions kept: past it the oldest idle one goes.
const maxSessions = 10000

// session is one logged-in admin. Only the server knows it: the cookie
// holds a random token naming it.
type session struct {
	user string
	// hash is the user's password hash at login: when the users file
	// no longer has it (a new password, the user removed) the session ends.
	hash string
	csrf string
	seen time.Time // last request: the idle timeout counts from it
	// flash is the result of the last action, shown once by the next page.
	flash, flashErr string
}

type sessions struct {
	timeout time.Duration
	mu      sync.Mutex
	m       map[string]*session
}

func newSessions(timeout time.Duration) *sessions {
	return &sessions{timeout: timeout, m: map[string]*session{}}
}

// token is 32 random bytes, URL-safe.
func token() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for user and returns its cookie token.
func (s *sessions) create(user, hash string, now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, ss := range s.m {
		if now.Sub(ss.seen) > s.timeout {
			delete(s.m, id)
		}
	}
	if len(s.m) >= maxSessions {
		var oldest string
		for id, ss := range s.m {
			if oldest == "" || ss.seen.Before(s.m[oldest].seen) {
				oldest = id
			}
		}
		delete(s.m, oldest)
	}
	id := token()
	s.m[id] = &session{user: user, hash: hash, csrf: token(), seen: now}
	return id
}

// get returns the live session of id, touching it when touch is set; nil
// when there is none or it has been idle too long (it is then ended).
func (s *sessions) get(id string, now time.Time, touch bool) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[id]
	if ss == nil {
		return nil
	}
	if now.Sub(ss.seen) > s.timeout {
		delete(s.m, id)
		return nil
	}
	if touch {
		ss.seen = now
	}
	return ss
}

func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// setFlash and takeFlash carry an action's result to the page shown
// after its redirect.
func (s *sessions) setFlash(ss *session, msg string, failed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if failed {
		ss.flash, ss.flashErr = "", msg
	} else {
		ss.flash, ss.flashErr = msg, ""
	}
}

func (s *sessions) takeFlash(ss *session) (msg, errMsg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg, errMsg = ss.flash, ss.flashErr
	ss.flash, ss.flashErr = "", ""
	return msg, errMsg
}

// setCookie sets a cookie only this console reads: HttpOnly,
// SameSite=Strict, Secure when the request came over TLS.
func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName(r, name), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}

// cookieName is name as the request's connection has it: over TLS with
// the __Host- prefix, which a browser accepts only from a secure origin,
// Secure, for Path=/ and without Domain, so that no other host (a
// sibling subdomain, a plain-HTTP page) can set or shadow it.
func cookieName(r *http.Request, name string) string {
	if r.TLS != nil {
		return "__Host-" + name
	}
	return name
}

// cookie is the request's cookie of name (cookieName).
func cookie(r *http.Request, name string) (*http.Cookie, error) {
	return r.Cookie(cookieName(r, name))
}

type ctxKey struct{}

// current is the request's session, set by get and post.
func current(r *http.Request) *session {
	ss, _ := r.Context().Value(ctxKey{}).(*session)
	return ss
}

// sessionOf finds the request's session; nil without a live one. Page
// views and POSTs count as activity, API calls do not. A
// session whose admin is no longer in the users file, or has another
// password there, is ended.
func (c *Console) sessionOf(r *http.Request) (*session, string) {
	ck, err := cookie(r, sessionCookie)
	if err != nil {
		return nil, ""
	}
	// The dashboard's polls of /api/ are no sign of an admin at the
	// screen: an unattended dashboard logs out after session_timeout.
	ss := c.sessions.get(ck.Value, c.o.Now(), !strings.HasPrefix(r.URL.Path, "/api/"))
	if ss == nil {
		return nil, ""
	}
	if h, ok := c.users.Hash(ss.user); !ok || h != ss.hash {
		c.sessions.end(ck.Value)
		why := "password changed"
		if !ok {
			why = "removed"
		}
		c.o.Log.Main("", "admin "+ss.user+" session ended: "+why)
		return nil, ""
	}
	return ss, ck.Value
}

// get wraps a page: without a session, to the login page (an API call
// gets 401 rather than a page it cannot use).
func (c *Console) get(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss, _ := c.sessionOf(r)
		if ss == nil {
			if strings.HasPrefix(r.URL.Path, "/api/") {
				http.Error(w, "not logged in", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, ss)))
	}
}

// post wraps an action: a session, a request from this host (Origin) and
// the session's CSRF token (form field csrf or header X-CSRF-Token) are
// all required; a refusal is 403 and logged.
func (c *Console) post(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss, _ := c.sessionOf(r)
		if ss == nil {
			c.refuse(w, r, refusedSession, "", "no session")
			return
		}
		if !sameOrigin(r) {
			c.refuse(w, r, refusedCSRF, ss.user, "Origin "+r.Header.Get("Origin")+" is not this host")
			return
		}
		got := r.Header.Get("X-CSRF-Token")
		if got == "" {
			got = r.PostFormValue("csrf")
		}
		if !equal(got, ss.csrf) {
			what := "wrong CSRF token"
			if got == "" {
				what = "no CSRF token"
			}
			c.refuse(w, r, refusedCSRF, ss.user, what)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, ss)))
	}
}

// refuse answers a POST that failed the checks with 403 and logs it (one
// line a minute per client IP and kind).
func (c *Console) refuse(w http.ResponseWriter, r *http.Request, kind, user, why string) {
	who := ""
	if user != "" {
		who = " of " + user
	}
	c.logLimited(clientIP(r), kind, "admin request "+r.Method+" "+r.URL.Path+who+" from "+clientIP(r)+" refused: "+why)
	http.Error(w, "Forbidden: "+why, http.StatusForbidden)
}

// logLimited writes line to the mainlog unless ip had a line of kind
// within the last minute; the next line written counts those left out.
func (c *Console) logLimited(ip, kind, line string) {
	if ok, suffix := c.limit.line(c.o.Now(), ip, kind); ok {
		c.o.Log.Main("", line+suffix)
	}
}

// sameOrigin is false for a request whose Origin names another origin
// than the one it was sent to: another host, or the same host by the
// other scheme (a plain-HTTP page posting to the TLS console). Browsers
// send Origin with every POST; a request without it (a script) still
// needs the token.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	u, err := url.Parse(o)
	return err == nil && u.Scheme == scheme && u.Host == r.Host
}

func equal(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
