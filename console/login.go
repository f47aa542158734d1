package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

type loginData struct {
	CSRF, Next, User, Error string
}

// loginPage shows the form (a logged-in admin goes on), with a fresh double-submit token in a cookie
// and in the form: a login POST must carry both, equal.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if ss, _ := c.sessionOf(r); ss != nil {
		http.Redirect(w, r, safeNext(r.FormValue("next")), http.StatusSeeOther)
		return
	}
	c.showLogin(w, r, http.StatusOK, loginData{Next: safeNext(r.FormValue("next"))})
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, d loginData) {
	d.CSRF = token()
	setCookie(w, r, loginCookie, d.CSRF, 0)
	c.render(w, r, status, "login", "Log in", d)
}

// login checks a name and password against the users file. A failure
// waits failDelay and counts against the client's IP; past the throttle
// that IP is refused without a check.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	ip := clientIP(r)
	if !sameOrigin(r) {
		c.refuse(w, r, refusedCSRF, "", "Origin "+r.Header.Get("Origin")+" is not this host")
		return
	}
	ck, err := cookie(r, loginCookie)
	if err != nil || !equal(r.PostFormValue("csrf"), ck.Value) {
		c.refuse(w, r, refusedCSRF, "", "login without its CSRF token")
		return
	}
	user, pass := r.PostFormValue("user"), r.PostFormValue("password")
	next := safeNext(r.PostFormValue("next"))
	release, inTurn := c.oneLogin(r.Context(), ip)
	if !inTurn {
		return
	}
	defer release()
	now := c.o.Now()
	if c.throttle.Blocked(now, ip, "") {
		c.logLimited(ip, refusedBlocked, "admin login refused for "+logName(user)+" from "+ip+": too many failures")
		c.showLogin(w, r, http.StatusTooManyRequests, loginData{Next: next, User: user, Error: "Too many failed logins from your address; try again later."})
		return
	}
	ok, err := c.users.Check(r.Context(), user, pass)
	if err != nil {
		c.o.Log.Panic("admin login: " + err.Error())
	}
	if !ok || user == "" {
		// The answer comes failDelay after the request, whatever the
		// check cost: an unknown user (a cheaper dummy hash) or another
		// hash's cost must not show in the time.
		checked := c.o.Now()
		c.throttle.Fail(checked, ip, "")
		c.sleep(r.Context(), failDelay-checked.Sub(now))
		c.logLimited(ip, refusedLogin, "admin login failed for "+logName(user)+" from "+ip)
		c.showLogin(w, r, http.StatusUnauthorized, loginData{Next: next, User: user, Error: "Wrong name or password."})
		return
	}
	if old, err := cookie(r, sessionCookie); err == nil {
		c.sessions.end(old.Value)
	}
	// The hash checked against, read again: a file changed in between
	// gives a session that ends at its first request.
	hash, _ := c.users.Hash(user)
	setCookie(w, r, sessionCookie, c.sessions.create(user, hash, now), 0)
	setCookie(w, r, loginCookie, "", -1)
	c.o.Log.Main("", "admin "+user+" logged in from "+ip)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// turn is one client IP's place at logging in: a token held by the
// login being checked, and how many are holding or waiting for it.
type turn struct {
	token   chan struct{}
	waiting int
}

// oneLogin makes the logins from one IP take turns, so that the throttle
// has counted each failure before the next guess is checked: guesses sent
// in parallel would otherwise all pass Blocked before the first failed.
// It returns the release of the turn; false when ctx ended first.
func (c *Console) oneLogin(ctx context.Context, ip string) (func(), bool) {
	c.loginMu.Lock()
	t := c.logins[ip]
	if t == nil {
		t = &turn{token: make(chan struct{}, 1)}
		c.logins[ip] = t
	}
	t.waiting++
	c.loginMu.Unlock()
	leave := func() {
		c.loginMu.Lock()
		if t.waiting--; t.waiting == 0 {
			delete(c.logins, ip)
		}
		c.loginMu.Unlock()
	}
	select {
	case t.token <- struct{}{}:
		return func() { <-t.token; leave() }, true
	case <-ctx.Done():
		leave()
		return nil, false
	}
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	ss := current(r)
	if ck, err := cookie(r, sessionCookie); err == nil {
		c.sessions.end(ck.Value)
	}
	setCookie(w, r, sessionCookie, "", -1)
	c.o.Log.Main("", "admin "+ss.user+" logged out from "+clientIP(r))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// safeNext is where to go after the login: a path of this console, never
// another site ("//evil", "https://...", or "/\t/evil", which a browser
// reads as "//evil" once it has dropped the tab).
func safeNext(next string) string {
	bad := func(r rune) bool { return r < ' ' || r == 0x7f || r == '\\' }
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsFunc(next, bad) {
		return "/"
	}
	if u, err := url.Parse(next); err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return next
}

// logName is a login name as the mainlog shows it: what a client typed
// is cut short and kept on one line.
func logName(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
