package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"mxgate/internal/browsertest"
	"mxgate/internal/peertest"
)

// TestConsole drives the web console in a real headless Chromium against
// the built binary, with a real spamd quarantining spam and smtp-sink as
// the store: an admin made with `mxgate admin passwd` logs in through the
// form; the dashboard's totals show the messages sent; the tracking page
// finds a sender refused at RCPT with the refusal's text; a quarantined
// message released from its page (with a reason) arrives at the sink; and
// a POST without the CSRF token, from the page or from another client
// with the session's cookie, is refused.
func TestConsole(t *testing.T) {
	t.Parallel()
	requirePrograms(t, "spamd", "smtp-sink")
	spamd := startScanner(t, "spamd")
	s := startSink(t)
	dir := t.TempDir()

	// The admin, as an operator makes one: the password on stdin.
	users := filepath.Join(dir, "admins")
	cmd := exec.Command(binary, "admin", "passwd", "--file", users, "admin")
	cmd.Stdin = strings.NewReader("correct horse\n")
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != "user admin added to "+users+"\n" {
		t.Fatalf("mxgate admin passwd: %v\n%s", err, out)
	}

	admin := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
	b, err := os.ReadFile(filepath.Join("testdata", "console.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := filepath.Join(dir, "console.toml.tmpl")
	text := strings.NewReplacer("@SPAMD@", spamd, "@ADMIN@", admin, "@USERS@", users).Replace(string(b))
	if err := os.WriteFile(tmpl, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startMxgateConfig(t, tmpl, s.URL())
	base := "http://" + admin

	ctx := browsertest.New(t, 3*time.Minute)
	// Every page must run without a script error or a CSP refusal.
	var mu sync.Mutex
	var problems []string
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s:%d %s", m.URL, m.Line+1, m))
				mu.Unlock()
			}
		}
	}()
	// Each step is bounded on its own, and a failed one says where the
	// browser was and what it showed.
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
			defer lcancel()
			page, _ := chromedp.Run(lctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
			t.Fatalf("%s: %v\nthe browser shows %s", what, err, page)
		}
	}
	textOf := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}

	// Log in through the form: the dashboard comes up.
	do("log in", chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#user")),
		chromedp.SendKeys(chromedp.CSS("#user"), "admin"),
		chromedp.SendKeys(chromedp.CSS("#password"), "correct horse"),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#totals")))
	if who := textOf("#whoami"); who != "admin" {
		t.Errorf("logged in as %q", who)
	}
	requireLine(g, `admin admin logged in from 127\.0\.0\.1$`)
	// Nothing has been sent yet: the page the test keeps open shows none.
	for _, v := range []string{"delivered", "quarantined", "rejected"} {
		if got := textOf(`#totals td[data-verdict="` + v + `"]`); got != "0" {
			t.Fatalf("before any mail the dashboard shows %s %s", got, v)
		}
	}

	// Mail: N messages accepted and delivered, one spam quarantined, one
	// sender refused at RCPT (relaying is not permitted).
	const n = 3
	ham := corpusMessage(t, "exim-basics-ham.eml")
	var ids []string
	for range n {
		ids = append(ids, sendOne(t, g.addr, ham).ID())
	}
	spam := sendOne(t, g.addr, corpusMessage(t, "pharmacy-spam.eml")).ID()
	refusal := rcptReply(t, "127.0.0.1", g.addr, "spammer@bad.example", "victim@elsewhere.example")
	if refusal.Code/100 != 5 {
		t.Fatalf("relay attempt: %v, want 5xx", refusal)
	}
	g.waitCompleted(ids...)
	g.requireLog(spam, `quarantined`)

	// The dashboard's totals, as the page shows them: the page opened at
	// the login, before the mail, is not reloaded; its script brings the
	// counts (polling every 10 s), and the chart gets a line per verdict
	// that occurred (uPlot's legend names them).
	want := map[string]string{"delivered": fmt.Sprint(n), "quarantined": "1", "rejected": "1"}
	waitFor(t, 45*time.Second, func() string {
		for v, w := range want {
			if got := textOf(`#totals td[data-verdict="` + v + `"]`); got != w {
				time.Sleep(500 * time.Millisecond)
				return fmt.Sprintf("dashboard shows %s %s, want %s", got, v, w)
			}
		}
		return ""
	})
	if u := textOf("#updated"); u == "now" || strings.HasPrefix(u, "update failed") {
		t.Errorf("the script has not updated the page: %s", u)
	}
	do("chart", chromedp.WaitVisible(chromedp.CSS("#chart-series canvas")))
	if legend := textOf("#chart-series .u-legend"); !strings.Contains(legend, "delivered") || !strings.Contains(legend, "quarantined") || !strings.Contains(legend, "rejected") {
		t.Errorf("the chart's legend is %q, want the verdicts delivered, quarantined and rejected", legend)
	}
	// A reload shows the same, rendered by the server.
	do("dashboard", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#totals")))
	for v, w := range want {
		if got := textOf(`#totals td[data-verdict="` + v + `"]`); got != w {
			t.Errorf("reloaded, the dashboard shows %s %s, want %s", got, v, w)
		}
	}

	// Tracking: search for the refused sender; the refusal's text is there.
	do("tracking search", chromedp.Navigate(base+"/tracking"),
		chromedp.WaitVisible(chromedp.CSS("#t-sender")),
		chromedp.SendKeys(chromedp.CSS("#t-sender"), "spammer@bad.example"),
		chromedp.Click(chromedp.CSS("#t-search")),
		chromedp.WaitVisible(chromedp.CSS("#results")))
	reason := refusal.Text()
	if got := textOf("#results tbody tr td.reason"); !strings.Contains(got, reason) {
		t.Errorf("tracking shows reason %q, want it to contain %q", got, reason)
	}
	do("tracking message", chromedp.Click(chromedp.CSS("#results tbody tr a")), chromedp.WaitVisible(chromedp.CSS("#timeline")))
	if got := textOf("#reason"); !strings.Contains(got, reason) {
		t.Errorf("message page shows reason %q, want %q", got, reason)
	}
	if got := textOf("#verdict"); got != "rejected" {
		t.Errorf("message page shows verdict %q", got)
	}

	// Quarantine: release the spam with a reason; it reaches the sink.
	do("quarantine", chromedp.Navigate(base+"/quarantine"),
		chromedp.WaitVisible(chromedp.CSS(`#quarantine tr[data-id="`+spam+`"]`)),
		chromedp.Click(chromedp.CSS(`#quarantine tr[data-id="`+spam+`"] a`)),
		chromedp.WaitVisible(chromedp.CSS("#release-reason")),
		chromedp.SendKeys(chromedp.CSS("#release-reason"), "a false positive"),
		chromedp.Click(chromedp.CSS("#release")),
		chromedp.WaitVisible(chromedp.CSS("#flash")))
	if got := textOf("#flash"); got != "Message "+spam+" has been released from quarantine" {
		t.Errorf("after the release the page says %q", got)
	}
	g.waitCompleted(spam)
	g.requireLog(spam, `released from quarantine by admin because: a false positive$`)
	var arrived bool
	for _, m := range s.messages(t) {
		arrived = arrived || slices.Contains(m.ids, spam)
	}
	if !arrived {
		t.Errorf("the released message %s did not reach the sink", spam)
	}

	mu.Lock()
	if len(problems) > 0 {
		t.Errorf("the browser reported errors:\n%s", strings.Join(problems, "\n"))
	}
	mu.Unlock()

	// A POST without the token: from the page's own script (same origin,
	// the session's cookie sent) and from another client holding the
	// cookie. Both are refused, and nothing happens.
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("/logout", {method: "POST"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil || status != http.StatusForbidden {
		t.Errorf("POST from the page without the token: %d, %v; want 403", status, err)
	}
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	var session string
	for _, c := range cookies.Cookies {
		if c.Name == "mxgate_session" {
			session = c.Value
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict {
				t.Errorf("session cookie: HttpOnly %v, SameSite %v", c.HTTPOnly, c.SameSite)
			}
		}
	}
	if session == "" {
		t.Fatal("the browser has no session cookie")
	}
	for _, r := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/queue", http.StatusOK}, // the cookie is good
		{"POST", "/logout", http.StatusForbidden},
		{"POST", "/quarantine/" + spam + "/delete", http.StatusForbidden},
	} {
		req, _ := http.NewRequestWithContext(context.Background(), r.method, base+r.path, strings.NewReader("reason=x"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: "mxgate_session", Value: session})
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != r.want {
			t.Errorf("%s %s with the cookie, without the token: %d, want %d", r.method, r.path, resp.StatusCode, r.want)
		}
	}
	requireLine(g, `admin request POST /logout of admin from 127\.0\.0\.1 refused: no CSRF token$`)
	if got := textOf("#whoami"); got != "admin" {
		t.Errorf("the refused logout logged the browser out: %q", got)
	}
}

// requireLine fails the test unless a mainlog line without a message ID
// ends in what pattern matches.
func requireLine(g *mxgate, pattern string) {
	g.t.Helper()
	if re := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ` + pattern); !g.logHas(re) {
		g.t.Errorf("mainlog has no line matching %q", re)
	}
}
