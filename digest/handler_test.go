package digest

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mxgate/spool"
)

type linkServer struct {
	q         *testQueue
	url       string
	delivered []spool.ID
	panics    []string
}

func newLinkServer(t *testing.T) *linkServer {
	t.Helper()
	ls := &linkServer{q: newTestQueue(t)}
	keyFile := filepath.Join(ls.q.dir, "digest.key")
	if err := os.WriteFile(keyFile, testKey, 0o600); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/q/", Handler(HandlerOptions{
		KeyFile: keyFile, Queue: ls.q.Queue, Now: func() time.Time { return testNow },
		Deliver: func(id spool.ID) { ls.delivered = append(ls.delivered, id) },
		Log:     func(s string) { ls.panics = append(ls.panics, s) },
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	ls.url = srv.URL
	return ls
}

// do requests a link's page and returns its status and the text of its
// message paragraph.
func (ls *linkServer) do(t *testing.T, method, link string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, link, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	_, msg, _ := strings.Cut(string(b), `<p id="message">`)
	msg, _, _ = strings.Cut(msg, "</p>")
	return resp.StatusCode, msg, resp.Header
}

func (ls *linkServer) link(a Action, id spool.ID, rcpt string, expires time.Time) string {
	return Link(ls.url, testKey, Token{Action: a, ID: id, Recipient: rcpt, Expires: expires})
}

// snapshot is every file of the spool with its contents, and the
// mainlog: what a GET must leave as it was.
func (ls *linkServer) snapshot(t *testing.T) map[string]string {
	t.Helper()
	files := map[string]string{}
	filepath.WalkDir(ls.q.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			files[p] = string(b)
		}
		return nil
	})
	return files
}

func TestHandlerRelease(t *testing.T) {
	ls := newLinkServer(t)
	id := ls.q.quarantine(t, "spammer@example.net", "<i>cheap</i>", "15.2", "bob@example.test", "carol@example.test")
	link := ls.link(Release, id, "bob@example.test", testNow.Add(time.Hour))

	before := ls.snapshot(t)
	for range 3 { // prefetched by a mail client, a scanner, the user
		code, msg, hdr := ls.do(t, http.MethodGet, link)
		received := testNow.Add(-time.Hour).Local().Format(dateLayout)
		want := "Release the message from spammer@example.net, subject &#34;&lt;i&gt;cheap&lt;/i&gt;&#34;, received " + received + ", to you (bob@example.test)? It will be delivered to your mailbox."
		if code != http.StatusOK || msg != want {
			t.Fatalf("GET = %d %q\nwant 200 %q", code, msg, want)
		}
		if csp := hdr.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'none'; style-src 'sha256-") || strings.Contains(csp, "script") {
			t.Errorf("Content-Security-Policy %q", csp)
		}
		if hdr.Get("Cache-Control") != "no-store" || hdr.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("headers %v: the link must not be cached or sent on", hdr)
		}
	}
	if after := ls.snapshot(t); !maps.Equal(before, after) {
		t.Errorf("GET changed the spool or the logs")
	}

	code, msg, _ := ls.do(t, http.MethodPost, link)
	if code != http.StatusOK || msg != "The message has been released: it is on its way to your mailbox (bob@example.test)." {
		t.Errorf("POST = %d %q", code, msg)
	}
	if len(ls.delivered) != 1 {
		t.Fatalf("delivered %v, want one message", ls.delivered)
	}
	env, err := ls.q.Spool.Load(ls.delivered[0])
	if err != nil || !slices.Equal(env.Recipients, []string{"bob@example.test"}) {
		t.Errorf("queued %+v, %v; want bob alone", env, err)
	}
	if e, err := ls.q.Spool.QuarantineLoad(id); err != nil || !slices.Equal(e.Envelope.Pending(), []string{"carol@example.test"}) {
		t.Errorf("quarantine after bob's release: %+v, %v; want carol's still held", e, err)
	}
	log := ls.q.mainlog(t)
	if !slices.Contains(log, string(id)+" released from quarantine for bob@example.test by digest link: queued as "+string(ls.delivered[0])) {
		t.Errorf("mainlog %q lacks the release", log)
	}

	gone := "This message is no longer in quarantine: it has already been released or deleted."
	for _, m := range []string{http.MethodPost, http.MethodGet} {
		if code, msg, _ := ls.do(t, m, link); code != http.StatusNotFound || msg != gone {
			t.Errorf("%s after the release = %d %q", m, code, msg)
		}
	}
	if len(ls.delivered) != 1 || len(ls.panics) != 0 {
		t.Errorf("delivered %v, paniclog %q after the second POST", ls.delivered, ls.panics)
	}
}

func TestHandlerDelete(t *testing.T) {
	ls := newLinkServer(t)
	id := ls.q.quarantine(t, "spammer@example.net", "x", "15.2", "bob@example.test")
	link := ls.link(Delete, id, "bob@example.test", testNow.Add(time.Hour))
	if code, msg, _ := ls.do(t, http.MethodGet, link); code != http.StatusOK || !strings.HasPrefix(msg, "Delete the message from spammer@example.net") {
		t.Errorf("GET = %d %q", code, msg)
	}
	if code, msg, _ := ls.do(t, http.MethodPost, link); code != http.StatusOK || msg != "The message has been deleted for you (bob@example.test). It will not be delivered to you." {
		t.Errorf("POST = %d %q", code, msg)
	}
	if list, _ := ls.q.Spool.QuarantineList(); len(list) != 0 || len(ls.delivered) != 0 {
		t.Errorf("after the delete: quarantine %d, delivered %v", len(list), ls.delivered)
	}
	if log := ls.q.mainlog(t); !slices.Equal(log, []string{string(id) + " deleted from quarantine for bob@example.test by digest link"}) {
		t.Errorf("mainlog %q", log)
	}
}

func TestHandlerRefusals(t *testing.T) {
	ls := newLinkServer(t)
	id := ls.q.quarantine(t, "spammer@example.net", "x", "15.2", "bob@example.test")
	good := ls.link(Release, id, "bob@example.test", testNow.Add(time.Hour))
	i := len(ls.url) + len("/q/") + 5
	c := "A"
	if good[i] == 'A' {
		c = "B"
	}
	altered := good[:i] + c + good[i+1:]
	invalid := "This link is not valid. Copy the whole link from the quarantine report."
	for _, tc := range []struct {
		name, method, link string
		code               int
		msg                string
	}{
		{"altered", http.MethodGet, altered, 403, invalid},
		{"altered POST", http.MethodPost, altered, 403, invalid},
		{"garbage", http.MethodGet, ls.url + "/q/nothing", 403, invalid},
		{"expired", http.MethodGet, ls.link(Release, id, "bob@example.test", testNow.Add(-time.Second)), 410,
			"This link has expired. The next quarantine report has new links; or ask your mail administrator."},
		{"another recipient", http.MethodGet, ls.link(Release, id, "carol@example.test", testNow.Add(time.Hour)), 404,
			"This message is no longer in quarantine: it has already been released or deleted."},
		{"unknown message", http.MethodPost, ls.link(Delete, "1xaQS4-0HvXwe-6f", "bob@example.test", testNow.Add(time.Hour)), 404,
			"This message is no longer in quarantine: it has already been released or deleted."},
		{"PUT", http.MethodPut, good, 405, "This link is opened, not PUTed."},
	} {
		if code, msg, _ := ls.do(t, tc.method, tc.link); code != tc.code || msg != tc.msg {
			t.Errorf("%s: %d %q, want %d %q", tc.name, code, msg, tc.code, tc.msg)
		}
	}
	if e, err := ls.q.Spool.QuarantineLoad(id); err != nil || len(e.Envelope.Pending()) != 1 || len(ls.delivered) != 0 {
		t.Errorf("the refused links changed the quarantine: %+v, %v", e, err)
	}
}
