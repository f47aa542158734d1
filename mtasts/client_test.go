package mtasts

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mxgate/dnsclient"
	"mxgate/internal/dnstest"
	"mxgate/internal/tlstest"
)

const policyText = "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n"

// site is a domain's MTA-STS publication: its TXT record's id (changed by
// the test) and the policy server's answer.
type site struct {
	mu      sync.Mutex
	id      string // "" = no TXT record
	body    string
	ctype   string
	status  int
	fetches atomic.Int32
}

func (s *site) set(f func(*site)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// startSite serves example.test's TXT record from a fake DNS server and
// its policy over HTTPS with a certificate for mta-sts.example.test
// issued by ca (a certificate for another name when wrongName).
func startSite(t *testing.T, ca *tlstest.CA, wrongName bool) (*site, Options) {
	t.Helper()
	s := &site{id: "id1", body: policyText, ctype: "text/plain; charset=utf-8", status: 200}
	zone := dnstest.Zone{"mta-sts.example.test. A": {"mta-sts.example.test. 60 IN A 127.0.0.1"}}.Handler(t)
	srv := dnstest.Start(t, func(q dns.Question, tcp bool) *dns.Msg {
		if !strings.EqualFold(q.Name, "_mta-sts.example.test.") {
			return zone(q, tcp)
		}
		m := new(dns.Msg)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.id != "" && q.Qtype == dns.TypeTXT {
			rr, _ := dns.NewRR(dnstest.TXT(q.Name, 60, "v=STSv1; id="+s.id))
			m.Answer = append(m.Answer, rr)
		}
		return m
	})
	name := "mta-sts.example.test"
	if wrongName {
		name = "www.example.test"
	}
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if r.URL.Path != "/.well-known/mta-sts.txt" || !strings.HasPrefix(r.Host, "mta-sts.example.test:") {
			http.NotFound(w, r)
			return
		}
		if s.status == http.StatusFound {
			http.Redirect(w, r, "https://elsewhere.test/policy", http.StatusFound)
			return
		}
		w.Header().Set("Content-Type", s.ctype)
		w.WriteHeader(s.status)
		io.WriteString(w, s.body)
	}))
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Certificate(t, name)}}
	hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	hs.StartTLS()
	t.Cleanup(hs.Close)
	_, port, _ := net.SplitHostPort(hs.Listener.Addr().String())
	dc, err := dnsclient.New([]string{srv.Addr}, time.Second, dnsclient.WithHostsFile(""))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return s, Options{DNS: dc, Port: p, RootCAs: ca.Pool, ConnectTimeout: time.Second, Timeout: 3 * time.Second}
}

// What a sender makes of a domain's publication: the policy, nothing, or
// why not.
func TestPolicy(t *testing.T) {
	ca := tlstest.NewCA(t, "Test CA")
	tests := []struct {
		name      string
		change    func(*site)
		wrongName bool
		otherCA   bool
		want      string // policy mode, "none", or "error: " + a part of the error
	}{
		{name: "published", want: "enforce"},
		{name: "no TXT record", change: func(s *site) { s.id = "" }, want: "none"},
		{name: "policy missing", change: func(s *site) { s.status = 404 }, want: "error: HTTP status 404"},
		{name: "redirect not followed", change: func(s *site) { s.status = 302 }, want: "error: HTTP status 302"},
		{name: "wrong content type", change: func(s *site) { s.ctype = "text/html" }, want: `error: Content-Type "text/html"`},
		{name: "too big", change: func(s *site) { s.body = policyText + strings.Repeat("x: y\n", 20000) }, want: "error: longer than 65536 bytes"},
		{name: "not a policy", change: func(s *site) { s.body = "<html>\n" }, want: "error: line 1"},
		{name: "certificate for another name", wrongName: true, want: "error: tls: failed to verify certificate"},
		{name: "certificate from an untrusted CA", otherCA: true, want: "error: tls: failed to verify certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, o := startSite(t, ca, tt.wrongName)
			if tt.change != nil {
				s.set(tt.change)
			}
			if tt.otherCA {
				o.RootCAs = tlstest.NewCA(t, "Other CA").Pool
			}
			c, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			p, err := c.Policy(context.Background(), "Example.TEST.")
			got := "none"
			switch {
			case err != nil:
				got = "error: " + err.Error()
			case p != nil:
				got = string(p.Mode)
			}
			if !strings.Contains(got, strings.TrimPrefix(tt.want, "error: ")) || strings.HasPrefix(tt.want, "error: ") != (err != nil) {
				t.Errorf("Policy = %s, want %s", got, tt.want)
			}
		})
	}
}

// The cache: a policy is fetched once per id, fetched again when the id
// changes, kept when the TXT record goes away or the new policy cannot be
// fetched, and survives a restart through its file.
func TestPolicyCache(t *testing.T) {
	ca := tlstest.NewCA(t, "Test CA")
	s, o := startSite(t, ca, false)
	o.CachePath = filepath.Join(t.TempDir(), "mta-sts.json")
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mode := func(c *Client) string {
		t.Helper()
		p, err := c.Policy(ctx, "example.test")
		if err != nil || p == nil {
			t.Fatalf("Policy = %v, %v", p, err)
		}
		return string(p.Mode)
	}
	steps := []struct {
		name    string
		change  func(*site)
		restart bool
		mode    string
		fetches int32
	}{
		{name: "first", mode: "enforce", fetches: 1},
		{name: "same id: cached", mode: "enforce", fetches: 1},
		{name: "new id: fetched", change: func(s *site) { s.id = "id2"; s.body = strings.Replace(policyText, "enforce", "testing", 1) }, mode: "testing", fetches: 2},
		{name: "TXT record gone: cached", change: func(s *site) { s.id = "" }, mode: "testing", fetches: 2},
		{name: "new id, fetch fails: cached", change: func(s *site) { s.id = "id3"; s.status = 500 }, mode: "testing", fetches: 3},
		{name: "restart: from the file", change: func(s *site) { s.id = "id2" }, restart: true, mode: "testing", fetches: 3},
	}
	for _, st := range steps {
		if st.change != nil {
			s.set(st.change)
		}
		if st.restart {
			if c, err = New(o); err != nil {
				t.Fatal(err)
			}
		}
		if got := mode(c); got != st.mode || s.fetches.Load() != st.fetches {
			t.Errorf("%s: mode %s after %d fetches, want %s after %d", st.name, got, s.fetches.Load(), st.mode, st.fetches)
		}
	}
}
