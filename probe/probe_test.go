package probe

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"mxgate/config"
	"mxgate/internal/dnstest"
	"mxgate/internal/peertest"
)

// parse loads a config of the base lines and text, as config check does.
func parse(t *testing.T, text string) *config.Config {
	t.Helper()
	c, err := config.Parse("p.toml", []byte("hostname = \"mx.example.test\"\nrelay.domains = [\"example.test\"]\noutbound.mode = \"none\"\nhost_lookup.enabled = false\n"+text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// silent is a peer that accepts and never answers.
func silent(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peertest.Silent(t, l)
	return l.Addr().String()
}

// msRE is the time an OK line reports.
var msRE = regexp.MustCompile(`, \d+ ms\)$`)

// TestFailureLines: a peer that is not there, and one that never
// answers, each fail with the reason an admin looks for, within the
// section's timeout; whether that fails config check follows on_error.
func TestFailureLines(t *testing.T) {
	closed := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
	hung := silent(t)
	missing := filepath.Join(t.TempDir(), "none.sock")
	broken := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(broken, []byte("alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dead := dnstest.StartZone(t, dnstest.Zone{})
	dead.SetFault(dnstest.Drop)
	tests := []struct {
		name, text string
		want       string // the one line, exactly
		failed     bool   // config check exits 1
	}{
		{"spamd refused", "downstream.url = \"maildir:///\"\n[spamd]\naddress = \"" + closed + "\"\n",
			"spamd " + closed + ": FAILED (connection refused)", true},
		{"spamd refused, on_error accept", "downstream.url = \"maildir:///\"\n[spamd]\naddress = \"" + closed + "\"\non_error = \"accept\"\n",
			"spamd " + closed + ": FAILED, not required (connection refused)", false},
		{"clamd hangs", "downstream.url = \"maildir:///\"\n[clamd]\naddress = \"" + hung + "\"\ntimeout = \"300ms\"\n",
			"clamd " + hung + ": FAILED (timeout after 300ms)", true},
		{"clamd socket missing", "downstream.url = \"maildir:///\"\n[clamd]\naddress = \"unix:" + missing + "\"\n",
			"clamd " + missing + ": FAILED (no such file or directory)", true},
		{"milter hangs", "downstream.url = \"maildir:///\"\n[[milter]]\naddress = \"inet:" + hung + "\"\nname = \"rspamd\"\nconnect_timeout = \"300ms\"\n",
			"milter rspamd inet:" + hung + ": FAILED (timeout after 300ms)", true},
		{"milter refused, on_error accept", "downstream.url = \"maildir:///\"\n[[milter]]\naddress = \"inet:" + closed + "\"\non_error = \"accept\"\n",
			"milter inet:" + closed + ": FAILED, not required (connection refused)", false},
		{"store refused", "downstream.url = \"lmtp://" + closed + "\"\n",
			"downstream lmtp://" + closed + ": FAILED (connection refused)", true},
		{"store hangs", "downstream.url = \"smtp://" + hung + "\"\ndownstream.connect_timeout = \"300ms\"\n",
			"downstream smtp://" + hung + ": FAILED (timeout after 300ms)", true},
		{"maildir missing", "downstream.url = \"maildir://" + missing + "\"\n",
			"downstream maildir://" + missing + ": FAILED (no such file or directory)", true},
		{"state store hangs", "downstream.url = \"maildir:///\"\n[state]\nurl = \"redis://:pw@" + hung + "/0\"\ntimeout = \"300ms\"\n",
			"state " + hung + ": FAILED, not required (timeout after 300ms)", false},
		{"state store refused", "downstream.url = \"maildir:///\"\n[state]\nurl = \"redis://" + closed + "/0\"\n",
			"state " + closed + ": FAILED, not required (connection refused)", false},
		{"auth socket missing", "downstream.url = \"maildir:///\"\n[auth]\nbackend = \"dovecot:" + missing + "\"\n",
			"auth dovecot:" + missing + ": FAILED (no such file or directory)", true},
		{"passwd-file broken", "downstream.url = \"maildir:///\"\n[auth]\nbackend = \"passwd-file:" + broken + "\"\n",
			"auth passwd-file:" + broken + ": FAILED (" + broken + ":1: want user:hash)", true},
		{"passwd-file", "downstream.url = \"maildir:///\"\n[auth]\nbackend = \"passwd-file:../auth/testdata/passwd\"\n",
			"auth passwd-file:../auth/testdata/passwd: OK (6 users)", false},
		{"resolver never answers", "downstream.url = \"maildir:///\"\n[msgauth]\nenabled = true\nresolver = \"" + dead.Addr + "\"\ntimeout = \"300ms\"\n",
			"resolver " + dead.Addr + ": FAILED, not required (timeout after 300ms)", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			results := Run(context.Background(), Plan(parse(t, tt.text)))
			var lines []string
			for _, r := range results {
				lines = append(lines, r.String())
			}
			// The maildir:/// stores other cases need are not their subject,
			// nor how long an answer took.
			if len(lines) > 1 {
				lines = slices.DeleteFunc(lines, func(l string) bool { return strings.HasPrefix(l, "downstream maildir:///:") })
			}
			for i, l := range lines {
				lines[i] = msRE.ReplaceAllString(l, ")")
			}
			if got := strings.Join(lines, "\n"); got != tt.want {
				t.Errorf("lines:\n%s\nwant:\n%s", got, tt.want)
			}
			if got := Failed(results); got != tt.failed {
				t.Errorf("Failed = %v, want %v", got, tt.failed)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %v: a probe outlived its timeout", took)
			}
		})
	}
}

// TestResolverAndList: a resolver that answers "." NS is OK; a DNS list's
// test entry is reported listed or not, and neither fails.
func TestResolverAndList(t *testing.T) {
	s := dnstest.StartZone(t, dnstest.Zone{
		". NS":                 {". 3600 IN NS a.root-servers.net."},
		"2.0.0.127.bl.test. A": {"2.0.0.127.bl.test. 60 IN A 127.0.0.2"},
	})
	c := parse(t, "downstream.url = \"maildir:///\"\n[rbl]\nresolver = \""+s.Addr+"\"\n[[rbl.list]]\nzone = \"bl.test\"\n[[rbl.list]]\nzone = \"other.test\"\n")
	results := Run(context.Background(), Plan(c))
	want := []string{
		"resolver " + s.Addr + ": OK (answered ./NS: NOERROR, 1 records, ",
		"dnsbl bl.test: OK (2.0.0.127.bl.test listed: 127.0.0.2, ",
		"dnsbl other.test: OK (2.0.0.127.other.test not listed (NXDOMAIN): the list lacks its test entry, ",
		"downstream maildir:///: OK (directory, writable, ",
	}
	if len(results) != len(want) {
		t.Fatalf("results %v, want %d", results, len(want))
	}
	for i, r := range results {
		if !strings.HasPrefix(r.String(), want[i]) {
			t.Errorf("line %q, want it to start %q", r, want[i])
		}
	}
	if Failed(results) {
		t.Error("Failed = true, want false")
	}
}

// TestHostLookupResolver: host_lookup's resolver is probed, and not
// required (a client without a name is still served).
func TestHostLookupResolver(t *testing.T) {
	c := parse(t, "downstream.url = \"maildir:///\"\n")
	c.HostLookup.Enabled, c.HostLookup.Resolver, c.HostLookup.Timeout = true, []string{"127.0.0.1:1"}, config.Duration(300*time.Millisecond)
	results := Run(context.Background(), Plan(c))
	if len(results) != 2 || !strings.HasPrefix(results[0].String(), "resolver 127.0.0.1:1: FAILED, not required (") {
		t.Fatalf("results %v, want the host_lookup resolver first, failed and not required", results)
	}
	if Failed(results) {
		t.Error("Failed = true, want false")
	}
}

// TestStateProbe: a real redis-server named by [state] url answers PONG;
// the line names the server, never the password.
func TestStateProbe(t *testing.T) {
	url := peertest.Redis(t)
	server := strings.TrimSuffix(strings.TrimPrefix(url, "redis://"), "/0")
	c := parse(t, "downstream.url = \"maildir:///\"\n[state]\nurl = \"redis://:pw@"+server+"/0\"\n")
	results := Run(context.Background(), Plan(c))
	last := results[len(results)-1]
	if got := last.String(); !strings.HasPrefix(got, "state "+server+": OK (PONG, ") || strings.Contains(got, "pw") {
		t.Errorf("state probe: %q", got)
	}
}
