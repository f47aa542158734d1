package gateway

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/filters"
	"mxgate/filters/msgauth"
	"mxgate/internal/dkimtest"
	"mxgate/mainlog"
	"mxgate/route"
	"mxgate/spool"
)

// startAuthDNS serves the SPF, DKIM and DMARC records of example.test,
// whose mail comes from both loopback test clients.
func startAuthDNS(t *testing.T, k dkimtest.Key) *fakeDNS {
	return startDNS(t, map[string]record{
		"example.test":                 {txt: "v=spf1 ip4:127.0.0.1 ip4:127.0.0.2 -all"},
		"sel1._domainkey.example.test": {txt: k.Record()},
		"_dmarc.example.test":          {txt: "v=DMARC1; p=reject"},
	})
}

func withMsgAuth(resolver string, sign ...config.DKIMSign) func(*config.Config) {
	return func(c *config.Config) {
		c.MsgAuth = config.MsgAuth{
			Enabled: true, Resolver: config.StringList{resolver}, SPFFail: "stamp", DMARCReject: "honour",
			Timeout: config.Duration(5 * time.Second), DKIMSign: sign,
		}
	}
}

// spooledMessage is the filters.Message of a message as delivery reads it.
func spooledMessage(t *testing.T, raw string) *filters.Message {
	t.Helper()
	head, body, ok := strings.Cut(raw, "\n\n")
	if !ok {
		t.Fatalf("message without a blank line: %q", raw)
	}
	var hs []spool.Header
	for line := range strings.Lines(head + "\n") {
		if (line[0] == ' ' || line[0] == '\t') && len(hs) > 0 {
			hs[len(hs)-1].Text += line
			continue
		}
		hs = append(hs, spool.Header{Type: ' ', Text: line})
	}
	return &filters.Message{
		ID: "1abcde-000001-AB", Sender: "alice@example.test", Helo: "client.test",
		ClientIP: netip.MustParseAddr("127.0.0.1"), Headers: hs, Size: int64(len(raw)),
		OpenBody: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil },
	}
}

const authLetter = "From: Alice <alice@example.test>\nTo: bob@example.test\nSubject: hello\n\nHello Bob.\n"

// TestAuthResults checks the stamp of a message passing SPF, DKIM and
// DMARC, and which incoming Authentication-Results the -H file keeps.
func TestAuthResults(t *testing.T) {
	k := dkimtest.New(t)
	dns := startAuthDNS(t, k)
	var signed bytes.Buffer
	err := dkim.Sign(&signed, strings.NewReader(strings.ReplaceAll(authLetter, "\n", "\r\n")), &dkim.SignOptions{
		Domain: "example.test", Selector: "sel1", Signer: k.Private,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
	})
	if err != nil {
		t.Fatal(err)
	}
	const (
		forged = "Authentication-Results: MX.example.test; spf=pass smtp.mailfrom=alice@example.test\n"
		other  = "Authentication-Results: other.test; dkim=pass header.d=example.test\n"
	)
	msg := forged + other + strings.ReplaceAll(signed.String(), "\r\n", "\n")

	ts := newTestServer(t, withMsgAuth(dns.addr))
	c := dial(t, ts.addr(0))
	c.greet()
	if got := c.sendMessage("alice@example.test", []string{"bob@example.test"}, msg); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA -> %q, want 250", got)
	}
	ids := ts.queued()
	if len(ids) != 1 {
		t.Fatalf("queued %v, want one message", ids)
	}
	env, err := ts.spool.Load(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range env.Headers {
		if strings.HasPrefix(strings.ToLower(h.Text), "authentication-results:") {
			got = append(got, string(h.Type)+" "+h.Text)
		}
	}
	want := []string{
		"  Authentication-Results: mx.example.test;\n\tspf=pass smtp.mailfrom=alice@example.test;\n" +
			"\tdkim=pass header.d=example.test header.s=sel1;\n\tdmarc=pass header.from=example.test\n",
		"* " + forged,
		"  " + other,
	}
	if !slices.Equal(got, want) {
		t.Errorf("Authentication-Results in -H (type, text):\n%q\nwant\n%q", got, want)
	}
	if env.Headers[1].Text != strings.TrimPrefix(want[0], "  ") {
		t.Errorf("header after Received = %q, want our Authentication-Results", env.Headers[1].Text)
	}
}

// TestDKIMSign has a trusted client's message signed, and the gateway's
// own verifier check the signature against the published key; an
// untrusted client's message is not signed, an authenticated one's is.
func TestDKIMSign(t *testing.T) {
	k := dkimtest.New(t)
	dns := startAuthDNS(t, k)
	ts := newTestServer(t, withAuth(t, withMsgAuth(dns.addr, config.DKIMSign{Domain: "example.test", Selector: "sel1", KeyFile: k.File})))
	verifier := msgauth.New(msgauth.Options{AuthservID: "verify.test", Resolvers: []string{dns.addr}, Timeout: 5 * time.Second})
	tests := []struct {
		name     string
		from     string
		auth     bool // on the submission listener, after AUTH
		wantSign bool
		wantDKIM string
	}{
		{"trusted client", "127.0.0.2", false, true, "dkim=pass header.d=example.test header.s=sel1"},
		{"untrusted client", "127.0.0.1", false, false, "dkim=none"},
		{"authenticated client", "127.0.0.1", true, true, "dkim=pass header.d=example.test header.s=sel1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := ts.queued()
			var c *client
			if tt.auth {
				c = dialFrom(t, tt.from, ts.addr(2))
				c.greet()
				c, _ = startTLS(t, c)
				c.expect("AUTH PLAIN "+plainResp("alice@example.test", "secret"), "235 ")
			} else {
				c = dialFrom(t, tt.from, ts.addr(0))
				c.greet()
			}
			if got := c.sendMessage("alice@example.test", []string{"bob@example.test"}, authLetter); !strings.HasPrefix(got, "250 ") {
				t.Fatalf("DATA -> %q, want 250", got)
			}
			c.expect("QUIT", "221 ")
			var id spool.ID
			for _, q := range ts.queued() {
				if !slices.Contains(before, q) {
					id = q
				}
			}
			if id == "" {
				t.Fatal("message not queued")
			}
			raw := ts.message(id)
			if signed := strings.HasPrefix(raw, "DKIM-Signature: "); signed != tt.wantSign {
				t.Errorf("message starts with DKIM-Signature: %v, want %v:\n%s", signed, tt.wantSign, raw)
			}
			logged := slices.Contains(logLines(ts, "mainlog"), string(id)+" DKIM: signed d=example.test s=sel1")
			if logged != tt.wantSign {
				t.Errorf("mainlog has %q: %v, want %v:\n%s", "DKIM: signed d=example.test s=sel1", logged, tt.wantSign, ts.logFile("mainlog"))
			}
			v, err := verifier.Check(context.Background(), spooledMessage(t, raw))
			if err != nil {
				t.Fatal(err)
			}
			if len(v.Headers) != 1 || !strings.Contains(v.Headers[0].Text, tt.wantDKIM) {
				t.Errorf("verifier stamped %q, want %q in it", v.Headers, tt.wantDKIM)
			}
		})
	}
}

// TestDKIMSignBadKey: the pipeline refuses to be built with a key file it
// cannot use, and says which, so the daemon does not start.
func TestDKIMSignBadKey(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file, want string
	}{
		{"missing", filepath.Join(dir, "missing.pem"), "msgauth.dkim_sign: DKIM key for example.test: open " + filepath.Join(dir, "missing.pem") + ": no such file or directory"},
		{"not PEM", notPEM, "msgauth.dkim_sign: DKIM key for example.test: " + notPEM + ": no PEM block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Hostname = "mx.example.test"
			cfg.Listen = []string{"127.0.0.1:0"}
			withMsgAuth("127.0.0.1:53", config.DKIMSign{Domain: "example.test", Selector: "sel1", KeyFile: tt.file})(cfg)
			pl, err := checks.Build(cfg, mainlog.Discard(), route.New(checks.RouteOptions(cfg)), false)
			if err == nil {
				pl.Close()
				t.Fatal("checks.Build succeeded, want an error")
			}
			if err.Error() != tt.want {
				t.Errorf("checks.Build: %v\nwant %s", err, tt.want)
			}
		})
	}
}
