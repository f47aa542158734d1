package checks

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxgate/config"
	"mxgate/filters"
	"mxgate/internal/dkimtest"
	"mxgate/internal/statetest"
	"mxgate/mainlog"
	"mxgate/route"
	"mxgate/state"
)

// The checks' state store is package state's; here an in-memory one.
func init() {
	OpenStore = func(*config.Config, bool) (state.Store, error) { return statetest.New(nil), nil }
}

// fullConfig is a config with every check on, loaded as a file is (so
// config fills every default), with the DKIM key at keyFile.
func fullConfig(t *testing.T, dir, keyFile string) *config.Config {
	t.Helper()
	text := strings.NewReplacer("@DIR@", dir, "@KEY@", keyFile).Replace(`
hostname = "mx.example.test"
listen   = ["127.0.0.1:2525"]
data_dir = "@DIR@"
[relay]
domains = ["example.test"]
[downstream]
url = "maildir://@DIR@/maildir"
verify_recipients = "file:@DIR@/recipients"
[[route]]
name    = "store2"
domains = ["routed.test"]
url     = "lmtp://127.0.0.1:24"
verify_recipients   = "callout"
recipient_delimiter = "-"
starttls            = "required"
tls_verify          = true
connect_timeout     = "3s"
[recipient_verify]
timeout = "4s"
[rbl]
resolver = "127.0.0.1:1"
timeout  = "2s"
[[rbl.list]]
zone = "bl.test"
[callout]
enabled  = true
resolver = "127.0.0.1:1"
options  = ["defer_ok"]
timeout  = "3s"
deadline = "7s"
[[ratelimit]]
key    = "auth_user"
rate   = "100/1h"
action = "hold"
[[ratelimit]]
key      = "client_ip"
rate     = "1000/1h"
per      = "rcpt"
on_error = "tempfail"
[greylist]
enabled = true
[[milter]]
address         = "inet:127.0.0.1:1"
on_error        = "accept"
connect_timeout = "1s"
command_timeout = "2s"
[[milter]]
address         = "inet:127.0.0.1:2"
on_error        = "tempfail"
connect_timeout = "1s"
command_timeout = "2s"
[spamd]
address = "127.0.0.1:783"
[clamd]
address = "127.0.0.1:3310"
[msgauth]
enabled  = true
resolver = "127.0.0.1:1"
[[msgauth.dkim_sign]]
domain   = "example.test"
selector = "sel1"
key_file = "@KEY@"
`)
	file := filepath.Join(dir, "mxgate.toml")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestOptions: the checks in the order they are asked, the relay policy
// first and routing right after it, each guarded by its own bound plus the backstop and the on_error
// its config implies.
func TestOptions(t *testing.T) {
	dir := t.TempDir()
	cfg := fullConfig(t, dir, dkimtest.New(t).File)
	p := &Pipeline{}
	o, err := options(cfg, mainlog.Discard(), route.New(RouteOptions(cfg)), nil, nil, false, p)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	want := []struct {
		name    string
		timeout time.Duration
		onError string
		breaker bool
	}{
		{"relay", 0, filters.OnErrorTempfail, false},
		{"route", 0, filters.OnErrorTempfail, false},
		{"rbl", 2*time.Second + backstop, filters.OnErrorTempfail, true},
		{"rcptverify", 4*time.Second + backstop, filters.OnErrorTempfail, true}, // before the callout
		{"ratelimit", backstop, filters.OnErrorTempfail, true},                  // one limit's on_error is tempfail
		{"greylist", backstop, filters.OnErrorAccept, true},
		{"callout", 10*time.Second + backstop, filters.OnErrorAccept, true}, // defer_ok
		{"milter", 6*time.Second + backstop, filters.OnErrorTempfail, true}, // not every milter accepts
	}
	if len(o.Checks) != len(want) {
		t.Fatalf("%d checks, want %d", len(o.Checks), len(want))
	}
	for i, w := range want {
		st := o.Checks[i]
		if st.Check.Name() != w.name || st.Timeout != w.timeout || st.OnError != w.onError || (st.BreakAfter > 0) != w.breaker {
			t.Errorf("check %d: %s timeout %v on_error %s breaker %d, want %+v", i, st.Check.Name(), st.Timeout, st.OnError, st.BreakAfter, w)
		}
	}
	var scanners []string
	for _, e := range o.Scanners {
		scanners = append(scanners, e.Filter.Name())
	}
	if got := strings.Join(scanners, " "); got != "msgauth spamd clamd" {
		t.Errorf("scanners %q, want msgauth (Authentication-Results under Received) spamd clamd", got)
	}
	if len(o.Final) != 1 || o.Final[0].Name() != "dkim-sign" {
		t.Errorf("final checks %v, want dkim-sign", o.Final)
	}
}

// TestBuildClosesOnError: a config that fails late (a DKIM key file that
// is there, which config checks, but holds no key) leaves nothing open:
// the callout cache it opened first is closed, so the next Build on the
// data_dir gets it at once.
func TestBuildClosesOnError(t *testing.T) {
	dir := t.TempDir()
	notKey := filepath.Join(dir, "not-a-key.pem")
	if err := os.WriteFile(notKey, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := fullConfig(t, dir, notKey)
	if _, err := Build(bad, mainlog.Discard(), route.New(RouteOptions(bad)), false); err == nil ||
		!strings.HasPrefix(err.Error(), "msgauth.dkim_sign: ") {
		t.Fatalf("Build with a missing key = %v, want a msgauth.dkim_sign error", err)
	}
	built := make(chan error, 1)
	go func() {
		cfg := fullConfig(t, dir, dkimtest.New(t).File)
		p, err := Build(cfg, mainlog.Discard(), route.New(RouteOptions(cfg)), false)
		if err == nil {
			err = p.Close()
		}
		built <- err
	}()
	select {
	case err := <-built:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the second Build still waits for the callout cache: the failed one left it open")
	}
}

// TestRecipientStores: a route's domains are verified at that route, the
// other relay domains at [downstream], other domains never; a config
// whose stores verify nothing gets no check.
func TestRecipientStores(t *testing.T) {
	dir := t.TempDir()
	cfg := fullConfig(t, dir, dkimtest.New(t).File)
	stores, ok := recipientStores(cfg, route.New(RouteOptions(cfg)))
	if !ok {
		t.Fatal("recipientStores: no store verifies")
	}
	tests := []struct {
		domain, name, source, delim string
		verified                    bool
	}{
		{"example.test", "downstream", "file", "+", true},
		{"routed.test", "store2", "callout", "-", true},
		{"elsewhere.test", "", "", "", false},
	}
	for _, tc := range tests {
		st, ok := stores(tc.domain)
		if ok != tc.verified || ok && (st.Name != tc.name || st.Source != tc.source || st.Delimiter != tc.delim || !st.Lowercase) {
			t.Errorf("%s: %+v, %v; want %s %s %q, %v", tc.domain, st, ok, tc.name, tc.source, tc.delim, tc.verified)
		}
	}
	if st, _ := stores("routed.test"); st.Target.Scheme != "lmtp" || st.Target.Port != 24 {
		t.Errorf("routed.test: target %+v, want lmtp://127.0.0.1:24", st.Target)
	}
	// The callout asks the store as delivery reaches it.
	if st, _ := stores("routed.test"); st.StartTLS != "required" || !st.TLSVerify || st.ConnectTimeout != 3*time.Second {
		t.Errorf("routed.test: starttls %q, tls_verify %v, connect timeout %v; want the route's required, true, 3s", st.StartTLS, st.TLSVerify, st.ConnectTimeout)
	}
	if st, _ := stores("example.test"); st.StartTLS != "opportunistic" || st.TLSVerify || st.ConnectTimeout != 30*time.Second {
		t.Errorf("example.test: starttls %q, tls_verify %v, connect timeout %v; want [downstream]'s defaults", st.StartTLS, st.TLSVerify, st.ConnectTimeout)
	}
	cfg.Downstream.Verify.Source = "none"
	cfg.Routes[0].Verify.Source = "none"
	if _, ok := recipientStores(cfg, route.New(RouteOptions(cfg))); ok {
		t.Error("recipientStores: a check although no store verifies")
	}
}

// TestRateLimitOptions: the config's limits reach the check as written:
// strict mode, the parsed rate, overrides by lower-cased value; a
// config's override applies to its value in any case.
func TestRateLimitOptions(t *testing.T) {
	dir := t.TempDir()
	cfg := fullConfig(t, dir, dkimtest.New(t).File)
	cfg.RateLimits = []config.RateLimit{{
		Name: "d", Key: "sender_domain", Per: "mail", Mode: "strict", Action: "defer", OnError: "accept",
		Rate: "1/1h", Count: 1, Period: time.Hour,
		Override: []config.RateOverride{{Match: "Bulk.TEST", Rate: "3/1h", Count: 3, Period: time.Hour}},
	}}
	k, onError := newRateLimit(cfg.RateLimits, statetest.New(nil))
	if onError != filters.OnErrorAccept {
		t.Errorf("guard on_error %s, want accept", onError)
	}
	ctx := context.Background()
	s := k.Open(ctx, &filters.Conn{IP: netip.MustParseAddr("192.0.2.1")})
	var got []string
	for _, dom := range []string{"bulk.test", "BULK.test", "bulk.test", "other.test", "other.test"} {
		v := s.Mail(ctx, &filters.Tx{Sender: "a@" + dom, SenderDomain: dom})
		got = append(got, string(rune('0'+v.Code/100)))
	}
	// bulk.test: 3/1h, so the 3rd (a rate just under 3 at once) passes;
	// other.test: 1/1h, over at once.
	if strings.Join(got, "") != "00044" {
		t.Errorf("replies %q, want bulk.test under its override and other.test over 1/1h", got)
	}
}
