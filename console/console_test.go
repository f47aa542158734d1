package console

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mxgate/admin"
	"mxgate/event"
	"mxgate/mainlog"
	"mxgate/spool"
)

// fixture is a console on a fresh spool, served on loopback, with one
// admin "alice" (password "secret") and a clock the test moves.
type fixture struct {
	t       *testing.T
	c       *Console
	srv     *httptest.Server
	q       *admin.Queue
	logDir  string
	users   string
	mu      sync.Mutex
	now     time.Time
	waited  []time.Duration // the failed logins' delays
	pause   time.Duration   // how long a failed login's delay really takes
	tick    time.Duration   // how far each reading of the clock moves it
	deliver []spool.ID      // what Deliver was asked
	events  []event.Event   // the Admin events of the actions
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{t: t, logDir: filepath.Join(dir, "log"), users: filepath.Join(dir, "admins"), now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.Local)}
	log, err := mainlog.Open(f.logDir, false)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{Sync: spool.SyncFdatasync, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close(); log.Close() })
	bus := event.NewBus(event.SinkFunc(func(e *event.Event) {
		if e.Kind == event.Admin {
			f.mu.Lock()
			f.events = append(f.events, *e)
			f.mu.Unlock()
		}
	}))
	f.q = &admin.Queue{Spool: sp, Log: log, User: "nobody-yet", Now: f.clock, Bus: bus}
	f.writeUsers("alice", "secret")
	f.c, err = New(Options{
		Users: f.users, SessionTimeout: time.Hour, Queue: f.q, Log: log, Now: f.clock,
		Deliver: func(id spool.ID) { f.mu.Lock(); f.deliver = append(f.deliver, id); f.mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	f.c.sleep = func(_ context.Context, d time.Duration) {
		f.mu.Lock()
		f.waited = append(f.waited, d)
		pause := f.pause
		f.mu.Unlock()
		time.Sleep(pause)
	}
	f.srv = httptest.NewServer(f.c)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(f.tick)
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// writeUsers writes the users file with one user; bcrypt's lowest cost
// keeps the tests quick.
func (f *fixture) writeUsers(user, pass string) {
	f.t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(f.users, []byte(user+":"+string(h)+"\n"), 0o640); err != nil {
		f.t.Fatal(err)
	}
}

// client is a browser: a cookie jar, and redirects not followed so the
// test sees them.
func (f *fixture) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type response struct {
	status   int
	body     string
	location string
	cookies  []string // Set-Cookie
}

func (f *fixture) do(c *http.Client, method, path string, form url.Values, header map[string]string) response {
	f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, f.srv.URL+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, string(b), resp.Header.Get("Location"), resp.Header.Values("Set-Cookie")}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf is the CSRF token of a page's first form.
func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf field in:\n%s", page)
	}
	return m[1]
}

// login logs c in as user with pass through the form.
func (f *fixture) login(c *http.Client, user, pass string) response {
	f.t.Helper()
	page := f.do(c, "GET", "/login", nil, nil)
	return f.do(c, "POST", "/login", url.Values{"csrf": {csrfOf(f.t, page.body)}, "user": {user}, "password": {pass}, "next": {"/"}}, nil)
}

// loggedIn is a client logged in as alice and its session's CSRF token.
func (f *fixture) loggedIn() (*http.Client, string) {
	f.t.Helper()
	c := f.client()
	if r := f.login(c, "alice", "secret"); r.status != http.StatusSeeOther || r.location != "/" {
		f.t.Fatalf("login: %d %s\n%s", r.status, r.location, r.body)
	}
	page := f.do(c, "GET", "/queue", nil, nil)
	return c, csrfOf(f.t, page.body)
}

func (f *fixture) mainlog() string {
	b, err := os.ReadFile(filepath.Join(f.logDir, "mainlog"))
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

func (f *fixture) requireLog(patterns ...string) {
	f.t.Helper()
	log := f.mainlog()
	for _, p := range patterns {
		if !regexp.MustCompile("(?m)" + p).MatchString(log) {
			f.t.Errorf("mainlog has no line matching %q:\n%s", p, log)
		}
	}
}

// queued commits a message to the queue.
func (f *fixture) queued(sender string, rcpts []string, hdrs ...string) spool.ID {
	f.t.Helper()
	w, err := f.q.Spool.Create()
	if err != nil {
		f.t.Fatal(err)
	}
	w.Write([]byte("the body\n"))
	env := &spool.Envelope{Sender: sender, Recipients: rcpts, Received: f.clock().Add(-time.Hour), Headers: headerList(hdrs)}
	if err := w.Commit(context.Background(), env); err != nil {
		f.t.Fatal(err)
	}
	return w.ID()
}

// quarantined quarantines a message.
func (f *fixture) quarantined(sender, reason string, hdrs ...string) spool.ID {
	f.t.Helper()
	w, err := f.q.Spool.Create()
	if err != nil {
		f.t.Fatal(err)
	}
	w.Write([]byte("spam body\n"))
	env := &spool.Envelope{Sender: sender, Recipients: []string{"bob@example.test"}, Received: f.clock(), Headers: headerList(hdrs)}
	if err := f.q.Spool.Quarantine(context.Background(), w, env, reason); err != nil {
		f.t.Fatal(err)
	}
	return w.ID()
}

func headerList(hdrs []string) []spool.Header {
	var hs []spool.Header
	for _, h := range hdrs {
		name, _, _ := strings.Cut(h, ":")
		hs = append(hs, spool.Header{Type: spool.HeaderType(name), Text: h + "\n"})
	}
	return hs
}

func TestLogin(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		name, user, pass string
		status           int
		log              string
	}{
		{"right password", "alice", "secret", http.StatusSeeOther, `admin alice logged in from 127\.0\.0\.1`},
		{"wrong password", "alice", "guess", http.StatusUnauthorized, `admin login failed for alice from 127\.0\.0\.1`},
		{"unknown user", "mallory", "secret", http.StatusUnauthorized, `admin login failed for mallory from 127\.0\.0\.1`},
		{"empty", "", "", http.StatusUnauthorized, `admin login failed for  from 127\.0\.0\.1`},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.advance(logEvery) // past the limit of the failures' lines
			r := f.login(f.client(), c.user, c.pass)
			if r.status != c.status {
				t.Errorf("status %d, want %d\n%s", r.status, c.status, r.body)
			}
			if c.status == http.StatusUnauthorized && !strings.Contains(r.body, "Wrong name or password.") {
				t.Errorf("no error on the page:\n%s", r.body)
			}
			f.requireLog(c.log)
		})
	}
	if len(f.waited) != 3 || f.waited[0] != time.Second {
		t.Errorf("failed logins waited %v, want 1s each of 3", f.waited)
	}
	// Without a session every page leads to the login.
	r := f.do(f.client(), "GET", "/queue?q=x", nil, nil)
	if r.status != http.StatusSeeOther || r.location != "/login?next=%2Fqueue%3Fq%3Dx" {
		t.Errorf("GET /queue without a session: %d %q", r.status, r.location)
	}
	if r := f.do(f.client(), "GET", "/api/stats", nil, nil); r.status != http.StatusUnauthorized {
		t.Errorf("GET /api/stats without a session: %d", r.status)
	}
}

// Five failures from one IP in ten minutes refuse it, the right password
// too, for ten minutes.
func TestLoginThrottle(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	for range 3 {
		f.login(c, "alice", "wrong")
	}
	f.advance(9 * time.Minute)
	for range 2 {
		f.login(c, "alice", "wrong")
	}
	r := f.login(c, "alice", "secret")
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "Too many failed logins") {
		t.Errorf("after 5 failures: %d\n%s", r.status, r.body)
	}
	f.requireLog(`admin login refused for alice from 127\.0\.0\.1: too many failures`)
	f.advance(9 * time.Minute)
	if r := f.login(c, "alice", "secret"); r.status != http.StatusTooManyRequests {
		t.Errorf("9 minutes later: %d, want still refused", r.status)
	}
	f.advance(2 * time.Minute)
	if r := f.login(c, "alice", "secret"); r.status != http.StatusSeeOther {
		t.Errorf("11 minutes later: %d, want logged in", r.status)
	}
}

// The refusals' mainlog lines: one a minute per client IP and kind, the
// next one counting those left out.
func TestRefusalLogLimit(t *testing.T) {
	f := newFixture(t)
	c, csrf := f.loggedIn()
	anon := f.client()
	for range 3 {
		f.do(c, "POST", "/queue/none/freeze", url.Values{"csrf": {"x" + csrf}}, nil)
		f.do(anon, "POST", "/queue/none/freeze", url.Values{}, nil)
		f.login(f.client(), "alice", "guess")
		f.advance(10 * time.Second)
	}
	f.advance(logEvery)
	f.do(c, "POST", "/queue/none/freeze", url.Values{}, map[string]string{"Origin": "http://evil.example"})
	f.do(anon, "POST", "/logout", url.Values{}, nil)
	f.login(f.client(), "mallory", "guess")
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(f.mainlog()), "\n") {
		if _, text, ok := strings.Cut(l, " admin "); ok && !strings.Contains(text, "logged in") {
			got = append(got, text)
		}
	}
	want := []string{
		"request POST /queue/none/freeze of alice from 127.0.0.1 refused: wrong CSRF token",
		"request POST /queue/none/freeze from 127.0.0.1 refused: no session",
		"login failed for alice from 127.0.0.1",
		"request POST /queue/none/freeze of alice from 127.0.0.1 refused: Origin http://evil.example is not this host (2 more from this IP not logged)",
		"request POST /logout from 127.0.0.1 refused: no session (2 more from this IP not logged)",
		"login failed for mallory from 127.0.0.1 (2 more from this IP not logged)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("mainlog lines\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Guesses sent in parallel from one IP take turns: the throttle counts
// each failure before the next guess is checked, so the sixth and later
// are refused unchecked.
func TestLoginThrottleParallel(t *testing.T) {
	f := newFixture(t)
	f.mu.Lock()
	f.pause = 50 * time.Millisecond
	f.mu.Unlock()
	const n = 8
	var forms []url.Values
	var clients []*http.Client
	for range n {
		c := f.client()
		page := f.do(c, "GET", "/login", nil, nil)
		forms = append(forms, url.Values{"csrf": {csrfOf(t, page.body)}, "user": {"alice"}, "password": {"guess"}})
		clients = append(clients, c)
	}
	var wg sync.WaitGroup
	status := make([]int, n)
	for i := range n {
		wg.Go(func() {
			resp, err := clients[i].PostForm(f.srv.URL+"/login", forms[i])
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			status[i] = resp.StatusCode
		})
	}
	wg.Wait()
	slices.Sort(status)
	want := []int{401, 401, 401, 401, 401, 429, 429, 429}
	if !slices.Equal(status, want) {
		t.Errorf("parallel guesses answered %v, want %v", status, want)
	}
	if got := len(f.waited); got != maxFailures {
		t.Errorf("%d guesses checked, want %d", got, maxFailures)
	}
}

// A failed login is answered failDelay after it began, whatever the
// password check cost, so the time does not tell a known user from an
// unknown one.
func TestLoginFailTime(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	page := f.do(c, "GET", "/login", nil, nil)
	f.mu.Lock()
	f.tick = 300 * time.Millisecond // the check reads the clock twice
	f.mu.Unlock()
	f.do(c, "POST", "/login", url.Values{"csrf": {csrfOf(t, page.body)}, "user": {"alice"}, "password": {"guess"}}, nil)
	if want := []time.Duration{failDelay - 300*time.Millisecond}; !slices.Equal(f.waited, want) {
		t.Errorf("the failed login waited %v, want %v", f.waited, want)
	}
}

// A changed users file is read again: a new password works at once.
func TestUsersFileReread(t *testing.T) {
	f := newFixture(t)
	f.writeUsers("alice", "changed")
	// The file is looked at once a second at most.
	time.Sleep(1100 * time.Millisecond)
	if r := f.login(f.client(), "alice", "changed"); r.status != http.StatusSeeOther {
		t.Errorf("the new password fails: %d", r.status)
	}
	if r := f.login(f.client(), "alice", "secret"); r.status != http.StatusUnauthorized {
		t.Errorf("the old password: %d, want refused", r.status)
	}
}

// A new password or the admin's removal from the users file ends the
// sessions they have open.
func TestSessionEndsWithUser(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		name, user, pass, log string
	}{
		{"password changed", "alice", "changed", `admin alice session ended: password changed$`},
		{"removed", "bob", "secret", `admin alice session ended: removed$`},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.writeUsers("alice", "secret")
			time.Sleep(1100 * time.Millisecond) // the file is looked at once a second
			cl, _ := f.loggedIn()
			other := f.client() // a second login, on an unchanged file, is no trouble
			if r := f.login(other, "alice", "secret"); r.status != http.StatusSeeOther {
				t.Fatalf("second login: %d", r.status)
			}
			f.writeUsers(c.user, c.pass)
			time.Sleep(1100 * time.Millisecond)
			if r := f.do(cl, "GET", "/queue", nil, nil); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, "/login") {
				t.Errorf("after the change: %d %q, want the login", r.status, r.location)
			}
			if r := f.do(other, "GET", "/api/stats", nil, nil); r.status != http.StatusUnauthorized {
				t.Errorf("the other session's API call: %d, want 401", r.status)
			}
			f.requireLog(c.log)
		})
	}
}

func TestSession(t *testing.T) {
	f := newFixture(t)
	c, _ := f.loggedIn()
	u, _ := url.Parse(f.srv.URL)
	var ck *http.Cookie
	for _, k := range c.Jar.Cookies(u) {
		if k.Name == sessionCookie {
			ck = k
		}
	}
	if ck == nil || len(ck.Value) != 43 {
		t.Fatalf("session cookie %+v: want 32 random bytes", ck)
	}
	// The cookie's attributes, as the server set them.
	r := f.login(f.client(), "alice", "secret")
	if len(r.cookies) == 0 || !strings.HasPrefix(r.cookies[0], sessionCookie+"=") {
		t.Fatalf("login set cookies %q", r.cookies)
	}
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(r.cookies[0], want) {
			t.Errorf("Set-Cookie %q lacks %s", r.cookies[0], want)
		}
	}
	if strings.Contains(r.cookies[0], "Secure") {
		t.Errorf("Set-Cookie %q is Secure over plain HTTP", r.cookies[0])
	}

	f.advance(59 * time.Minute)
	if r := f.do(c, "GET", "/", nil, nil); r.status != http.StatusOK {
		t.Errorf("59 minutes idle: %d, want the page", r.status)
	}
	f.advance(61 * time.Minute)
	if r := f.do(c, "GET", "/", nil, nil); r.status != http.StatusSeeOther {
		t.Errorf("61 minutes idle: %d, want the login", r.status)
	}

	// The dashboard's polls keep nothing alive; a page view or a POST does.
	c, csrf := f.loggedIn()
	for _, step := range []struct {
		idle   time.Duration
		path   string
		post   bool
		status int
	}{
		{40 * time.Minute, "/queue", false, http.StatusOK},                  // a page view: 40 minutes idle
		{40 * time.Minute, "/api/stats", false, http.StatusOK},              // 40 since the page
		{15 * time.Minute, "/queue/none/freeze", true, http.StatusSeeOther}, // a POST: 55 since the page
		{40 * time.Minute, "/api/stats", false, http.StatusOK},              // 40 since the POST
		{19 * time.Minute, "/api/stats", false, http.StatusOK},              // 59
		{2 * time.Minute, "/api/stats", false, http.StatusUnauthorized},     // 61: the polls did not count
	} {
		f.advance(step.idle)
		var r response
		if step.post {
			r = f.do(c, "POST", step.path, url.Values{"csrf": {csrf}}, nil)
		} else {
			r = f.do(c, "GET", step.path, nil, nil)
		}
		if r.status != step.status {
			t.Errorf("%s %v later: %d, want %d", step.path, step.idle, r.status, step.status)
		}
	}

	c, csrf = f.loggedIn()
	if r := f.do(c, "POST", "/logout", url.Values{"csrf": {csrf}}, nil); r.status != http.StatusSeeOther || r.location != "/login" {
		t.Errorf("logout: %d %s", r.status, r.location)
	}
	if r := f.do(c, "GET", "/", nil, nil); r.status != http.StatusSeeOther {
		t.Errorf("after logout: %d, want the login", r.status)
	}
	f.requireLog(`admin alice logged out from 127\.0\.0\.1`)
}

// Every POST needs the session's token and, when the browser says where
// it comes from, this host as Origin.
func TestCSRF(t *testing.T) {
	f := newFixture(t)
	c, csrf := f.loggedIn()
	id := f.queued("a@example.test", []string{"b@example.test"})
	qid := f.quarantined("s@example.test", "spam")
	routes := []string{
		"/logout",
		"/queue/" + string(id) + "/freeze", "/queue/" + string(id) + "/thaw",
		"/queue/" + string(id) + "/deliver", "/queue/" + string(id) + "/remove",
		"/quarantine/" + string(qid) + "/release", "/quarantine/" + string(qid) + "/delete",
	}
	for _, path := range routes {
		for _, bad := range []struct {
			name   string
			form   url.Values
			header map[string]string
		}{
			{"no token", url.Values{"reason": {"x"}}, nil},
			{"wrong token", url.Values{"csrf": {csrf[1:] + "x"}, "reason": {"x"}}, nil},
			{"wrong header", url.Values{"reason": {"x"}}, map[string]string{"X-CSRF-Token": "nope"}},
			{"other origin", url.Values{"csrf": {csrf}, "reason": {"x"}}, map[string]string{"Origin": "http://evil.example"}},
			{"other scheme", url.Values{"csrf": {csrf}, "reason": {"x"}}, map[string]string{"Origin": strings.Replace(f.srv.URL, "http:", "https:", 1)}},
		} {
			f.advance(logEvery) // past the limit of the refusals' lines
			if r := f.do(c, "POST", path, bad.form, bad.header); r.status != http.StatusForbidden {
				t.Errorf("POST %s with %s: %d, want 403", path, bad.name, r.status)
			}
		}
	}
	f.requireLog(`admin request POST /queue/\S+/remove of alice from 127\.0\.0\.1 refused: no CSRF token`,
		`refused: wrong CSRF token`, `refused: Origin http://evil.example is not this host`)
	if _, err := f.q.Spool.Load(id); err != nil {
		t.Errorf("the message changed: %v", err)
	}
	if _, err := f.q.Spool.QuarantineLoad(qid); err != nil {
		t.Errorf("the quarantined message changed: %v", err)
	}
	f.requireLog(`refused: Origin https://127\.0\.0\.1:\d+ is not this host`)
	// This origin, said, is good.
	if r := f.do(c, "POST", "/queue/"+string(id)+"/thaw", url.Values{"csrf": {csrf}}, map[string]string{"Origin": f.srv.URL}); r.status != http.StatusSeeOther {
		t.Errorf("thaw from this origin: %d", r.status)
	}
	// The header is as good as the field, for scripts.
	if r := f.do(c, "POST", "/queue/"+string(id)+"/freeze", url.Values{}, map[string]string{"X-CSRF-Token": csrf}); r.status != http.StatusSeeOther {
		t.Errorf("freeze with X-CSRF-Token: %d", r.status)
	}
	// The login form is a double submit: cookie and field must agree.
	nc := f.client()
	page := f.do(nc, "GET", "/login", nil, nil)
	tok := csrfOf(t, page.body)
	if r := f.do(f.client(), "POST", "/login", url.Values{"csrf": {tok}, "user": {"alice"}, "password": {"secret"}}, nil); r.status != http.StatusForbidden {
		t.Errorf("login without the cookie: %d", r.status)
	}
	if r := f.do(nc, "POST", "/login", url.Values{"csrf": {"x" + tok}, "user": {"alice"}, "password": {"secret"}}, nil); r.status != http.StatusForbidden {
		t.Errorf("login with another token: %d", r.status)
	}
	// No GET changes anything.
	if r := f.do(c, "GET", "/queue/"+string(id)+"/remove", nil, nil); r.status == http.StatusSeeOther || r.status == http.StatusOK {
		if _, err := f.q.Spool.Load(id); err != nil {
			t.Errorf("GET removed the message")
		}
	}
}

// What a message says is shown, never run.
func TestEscaping(t *testing.T) {
	f := newFixture(t)
	c, _ := f.loggedIn()
	evil := `<script>alert(1)</script>`
	qid := f.quarantined(`x"><script>@example.test`, "spam "+evil, "Subject: "+evil)
	id := f.queued("a@example.test", []string{"b@example.test"}, "Subject: "+evil)
	for _, path := range []string{"/quarantine", "/quarantine/" + string(qid), "/queue/" + string(id), "/queue?q=" + url.QueryEscape(evil)} {
		r := f.do(c, "GET", path, nil, nil)
		if r.status != http.StatusOK {
			t.Errorf("GET %s: %d", path, r.status)
		}
		if strings.Contains(r.body, "<script>alert") || strings.Contains(r.body, `"><script>`) {
			t.Errorf("GET %s shows the script unescaped:\n%s", path, r.body)
		}
		if !strings.Contains(r.body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("GET %s does not show the subject escaped:\n%s", path, r.body)
		}
	}
}

// The queue's operations change the spool as the CLI's do, and the
// mainlog names the admin.
func TestQueueOps(t *testing.T) {
	f := newFixture(t)
	c, csrf := f.loggedIn()
	id := f.queued("sender@example.test", []string{"rcpt@example.test"}, "Subject: queued one")
	other := f.queued("else@example.test", []string{"x@example.test"})
	sid := string(id)

	list := f.do(c, "GET", "/queue?q=RCPT@example", nil, nil).body
	if !strings.Contains(list, sid) || strings.Contains(list, string(other)) {
		t.Errorf("search for the recipient:\n%s", list)
	}
	view := f.do(c, "GET", "/queue/"+sid, nil, nil).body
	if !strings.Contains(view, "Subject: queued one") || !strings.Contains(view, "the body") {
		t.Errorf("message page lacks headers or body:\n%s", view)
	}

	post := func(op string) response {
		t.Helper()
		return f.do(c, "POST", "/queue/"+sid+"/"+op, url.Values{"csrf": {csrf}}, nil)
	}
	flash := func() string {
		m := regexp.MustCompile(`id="flash"[^>]*>([^<]*)<`).FindStringSubmatch(f.do(c, "GET", "/queue/"+sid, nil, nil).body)
		if m == nil {
			return ""
		}
		return m[1]
	}
	env := func() *spool.Envelope {
		e, err := f.q.Spool.Load(id)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}

	post("freeze")
	if env().Frozen.IsZero() {
		t.Error("freeze: not frozen")
	}
	if got := flash(); got != "Message "+sid+" is now frozen" {
		t.Errorf("freeze said %q", got)
	}
	post("freeze")
	if got := flash(); got != "Message "+sid+" is already frozen" {
		t.Errorf("freeze again said %q", got)
	}
	post("thaw")
	if !env().Frozen.IsZero() {
		t.Error("thaw: still frozen")
	}
	post("freeze")
	post("deliver")
	if e := env(); !e.Frozen.IsZero() || !e.NextTry.IsZero() {
		t.Errorf("deliver: frozen %v, next try %v", e.Frozen, e.NextTry)
	}
	if len(f.deliver) != 1 || f.deliver[0] != id {
		t.Errorf("deliver asked for %v", f.deliver)
	}
	if r := post("remove"); r.location != "/queue" {
		t.Errorf("remove went to %q", r.location)
	}
	if _, err := f.q.Spool.Load(id); err == nil {
		t.Error("remove: still queued")
	}
	f.requireLog(sid+` frozen by alice`, sid+` unfrozen by alice`, sid+` Unfrozen by forced delivery`,
		sid+` delivery forced by alice`, sid+` removed by alice`, sid+` Completed`)
	if r := post("explode"); r.status != http.StatusNotFound {
		t.Errorf("unknown operation: %d", r.status)
	}
}

func TestQuarantineOps(t *testing.T) {
	f := newFixture(t)
	c, csrf := f.loggedIn()
	keep := f.quarantined("spammer@example.test", "spamd score 12.0", "Subject: buy now")
	drop := f.quarantined("other@example.test", "virus Eicar-Signature")
	list := f.do(c, "GET", "/quarantine", nil, nil).body
	for _, want := range []string{string(keep), string(drop), "buy now", "spamd score 12.0", "&lt;spammer@example.test&gt;", "bob@example.test"} {
		if !strings.Contains(list, want) {
			t.Errorf("quarantine list lacks %q:\n%s", want, list)
		}
	}
	op := func(id spool.ID, op, reason string) response {
		return f.do(c, "POST", "/quarantine/"+string(id)+"/"+op, url.Values{"csrf": {csrf}, "reason": {reason}}, nil)
	}
	for _, o := range []string{"release", "delete"} {
		op(keep, o, "  ")
		if _, err := f.q.Spool.QuarantineLoad(keep); err != nil {
			t.Errorf("%s without a reason went ahead", o)
		}
	}
	if page := f.do(c, "GET", "/quarantine/"+string(keep), nil, nil).body; !strings.Contains(page, "Give a reason") {
		t.Errorf("no reason: the page does not say so:\n%s", page)
	}
	if r := op(keep, "release", "false positive, asked by bob\n"); r.location != "/quarantine" {
		t.Errorf("release went to %q", r.location)
	}
	if _, err := f.q.Spool.Load(keep); err != nil {
		t.Errorf("released message is not queued: %v", err)
	}
	if len(f.deliver) != 1 || f.deliver[0] != keep {
		t.Errorf("release delivered %v", f.deliver)
	}
	op(drop, "delete", "really a virus")
	if _, err := f.q.Spool.QuarantineLoad(drop); err == nil {
		t.Error("deleted message is still quarantined")
	}
	var got []string
	for _, e := range f.events {
		got = append(got, e.ID+" "+e.Action+" "+e.User+": "+e.Reason)
	}
	if want := []string{string(keep) + " release alice: false positive, asked by bob", string(drop) + " delete alice: really a virus"}; !slices.Equal(got, want) {
		t.Errorf("admin events %q, want %q", got, want)
	}
	// One line says who and why; the released message's arrival follows.
	var got2 []string
	for _, l := range strings.Split(strings.TrimSpace(f.mainlog()), "\n") {
		if strings.Contains(l, string(keep)) || strings.Contains(l, string(drop)) {
			_, text, _ := strings.Cut(l[20:], " ")
			got2 = append(got2, text)
		}
	}
	want2 := []string{
		"released from quarantine by alice because: false positive, asked by bob",
		"<= spammer@example.test",
		"deleted from quarantine by alice because: really a virus",
	}
	if len(got2) != len(want2) {
		t.Fatalf("the actions' mainlog lines\n%s\nwant\n%s", strings.Join(got2, "\n"), strings.Join(want2, "\n"))
	}
	for i := range want2 {
		if !strings.HasPrefix(got2[i], want2[i]) || (i != 1 && got2[i] != want2[i]) {
			t.Errorf("mainlog line %q, want %q", got2[i], want2[i])
		}
	}
}

func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"/queue?q=a": "/queue?q=a", "": "/", "queue": "/", "//evil.example/x": "/", "/\\evil.example": "/",
		"/\t/evil.example": "/", "https://evil.example/": "/", "/tracking/message?key=%231": "/tracking/message?key=%231",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
	// Logged in, the login page goes on to next.
	f := newFixture(t)
	c, _ := f.loggedIn()
	if r := f.do(c, "GET", "/login?next=/quarantine", nil, nil); r.status != http.StatusSeeOther || r.location != "/quarantine" {
		t.Errorf("GET /login with a session: %d %q", r.status, r.location)
	}
}

// Over TLS the cookies are Secure.
func TestSecureCookies(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewTLSServer(f.c)
	defer srv.Close()
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(srv.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	login := resp.Header.Get("Set-Cookie")
	resp, err = c.Do(func() *http.Request {
		form := url.Values{"csrf": {csrfOf(t, string(body))}, "user": {"alice"}, "password": {"secret"}}
		req, _ := http.NewRequest("POST", srv.URL+"/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, ck := range resp.Cookies() {
			req.AddCookie(ck)
		}
		return req
	}())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login over TLS: %d", resp.StatusCode)
	}
	session := resp.Header.Values("Set-Cookie")[0]
	for _, c := range []struct{ set, name string }{{login, "__Host-mxgate_login_csrf="}, {session, "__Host-mxgate_session="}} {
		if !strings.HasPrefix(c.set, c.name) || !strings.Contains(c.set, "; Secure") || !strings.Contains(c.set, "HttpOnly") ||
			!strings.Contains(c.set, "SameSite=Strict") || !strings.Contains(c.set, "Path=/") || strings.Contains(c.set, "Domain=") {
			t.Errorf("Set-Cookie %q over TLS, want %s...", c.set, c.name)
		}
	}
	// The session works by its __Host- name, and an Origin must be https.
	var ck *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == "__Host-mxgate_session" {
			ck = k
		}
	}
	if ck == nil {
		t.Fatal("no __Host-mxgate_session cookie")
	}
	get := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.AddCookie(ck)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, page := get("/queue")
	if status != http.StatusOK {
		t.Fatalf("GET /queue with the __Host- cookie: %d", status)
	}
	for _, o := range []struct {
		origin string
		status int
	}{{strings.Replace(srv.URL, "https:", "http:", 1), http.StatusForbidden}, {srv.URL, http.StatusSeeOther}} {
		req, _ := http.NewRequest("POST", srv.URL+"/queue/none/freeze", strings.NewReader(url.Values{"csrf": {csrfOf(t, page)}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", o.origin)
		req.AddCookie(ck)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != o.status {
			t.Errorf("POST over TLS with Origin %s: %d, want %d", o.origin, resp.StatusCode, o.status)
		}
	}
}

// The static files are served, their directories are not listed.
func TestStaticNoListing(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	for path, want := range map[string]int{
		"/static/console.js":                 http.StatusOK,
		"/static/vendor/uplot/uPlot.min.css": http.StatusOK,
		"/static/":                           http.StatusNotFound,
		"/static/vendor/":                    http.StatusNotFound,
		"/static/vendor":                     http.StatusNotFound,
		"/static/vendor/uplot/":              http.StatusNotFound,
		"/static/none.js":                    http.StatusNotFound,
	} {
		if r := f.do(c, "GET", path, nil, nil); r.status != want || strings.Contains(r.body, "<a href=") {
			t.Errorf("GET %s: %d, want %d\n%s", path, r.status, want, r.body)
		}
	}
}
