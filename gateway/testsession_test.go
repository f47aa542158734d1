package gateway

import (
	"bytes"
	"io"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/internal/tlstest"
	"mxgate/route"
)

// testSession runs a -bh session from ip with script as the client's
// input and returns the server's output and the trace, IDs replaced by
// "ID".
func testSession(t *testing.T, edit func(*config.Config), ip, script string) (out, trace string) {
	t.Helper()
	cfg := config.Default()
	cfg.Hostname = "mx.example.test"
	cfg.Relay.Domains = []string{"example.test"}
	cfg.Relay.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	// Trusted clients relay: mail for other domains has a route out.
	cfg.Outbound.Mode = "mx"
	if edit != nil {
		edit(cfg)
	}
	var o, tr bytes.Buffer
	tracer := NewTracer(&tr)
	pl, err := checks.Build(cfg, tracer, route.New(checks.RouteOptions(cfg)), true)
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	srv, err := New(Options{Config: cfg, Trace: tracer, Pipeline: pl.Pipeline})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ServeTest(netip.AddrPortFrom(netip.MustParseAddr(ip), 1234), strings.NewReader(script), &o); err != nil {
		t.Fatal(err)
	}
	id := regexp.MustCompile(`[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}`)
	return id.ReplaceAllString(o.String(), "ID"), id.ReplaceAllString(tr.String(), "ID")
}

func TestServeTestDecisions(t *testing.T) {
	const greet = "EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<u@example.test>\r\n"
	tests := []struct {
		name      string
		edit      func(*config.Config)
		ip        string
		script    string
		wantOut   []string // replies that must appear, in order
		wantTrace string
	}{
		{
			name:    "bare CR refused",
			ip:      "198.51.100.1",
			script:  greet + "DATA\r\nSubject: x\r\n\r\nbad\rline\r\n.\r\nQUIT\r\n",
			wantOut: []string{"550 5.5.2 " + bareNewlineText + "\r\n", "221 "},
			wantTrace: ">>> host in relay.trusted_networks? no\n" +
				">>> MAIL <a@client.test>: accepted\n" +
				">>> RCPT <u@example.test>: accepted: example.test in relay.domains\n" +
				">>> DATA: bare CR or LF in message (smtp.bare_newline = reject)\n" +
				"LOG: ID H=(client.test) [198.51.100.1] F=<a@client.test> rejected after DATA: bare CR or LF in message (SMTP smuggling)\n",
		},
		{
			name:    "bare CR normalized",
			edit:    func(c *config.Config) { c.SMTP.BareNewline = "normalize" },
			ip:      "198.51.100.1",
			script:  greet + "DATA\r\n\r\nbad\rline\r\n.\r\nQUIT\r\n",
			wantOut: []string{"250 2.0.0 OK id=ID (not queued: -bh test session)\r\n"},
			wantTrace: ">>> host in relay.trusted_networks? no\n" +
				">>> MAIL <a@client.test>: accepted\n" +
				">>> RCPT <u@example.test>: accepted: example.test in relay.domains\n" +
				">>> DATA: bare CR or LF in message normalized (smtp.bare_newline = normalize)\n" +
				">>> DATA: accepted: S=192; not queued: test session\n",
		},
		{
			name:    "message over the limit",
			edit:    func(c *config.Config) { c.SMTP.MaxMessageSize = 20 },
			ip:      "198.51.100.1",
			script:  greet + "DATA\r\n\r\n" + strings.Repeat("x", 30) + "\r\n.\r\nQUIT\r\n",
			wantOut: []string{"552 5.3.4 Message size exceeds maximum permitted\r\n", "221 "},
			wantTrace: ">>> host in relay.trusted_networks? no\n" +
				">>> MAIL <a@client.test>: accepted\n" +
				">>> RCPT <u@example.test>: accepted: example.test in relay.domains\n" +
				">>> DATA: message over smtp.max_message_size 20\n" +
				"LOG: ID H=(client.test) [198.51.100.1] F=<a@client.test> rejected after DATA: message too big: max=20\n",
		},
		{
			name:    "bad sender, then too many errors",
			edit:    func(c *config.Config) { c.SMTP.MaxErrors = 1 },
			ip:      "198.51.100.1",
			script:  "EHLO client.test\r\nMAIL FROM:<a@client.test.>\r\nMAIL FROM:<b@client.test.>\r\nQUIT\r\n",
			wantOut: []string{"501 5.1.7 Bad sender address syntax\r\n", "421 4.7.0 mx.example.test Too many errors, closing connection\r\n"},
			wantTrace: ">>> host in relay.trusted_networks? no\n" +
				">>> MAIL <a@client.test.>: bad address syntax: \"a@client.test.\": empty label in domain (leading, trailing or double dot)\n" +
				"LOG: H=(client.test) [198.51.100.1] rejected MAIL <a@client.test.>: bad address syntax: \"a@client.test.\": empty label in domain (leading, trailing or double dot)\n" +
				">>> MAIL <b@client.test.>: bad address syntax: \"b@client.test.\": empty label in domain (leading, trailing or double dot)\n" +
				"LOG: H=(client.test) [198.51.100.1] rejected MAIL <b@client.test.>: bad address syntax: \"b@client.test.\": empty label in domain (leading, trailing or double dot)\n" +
				">>> more than smtp.max_errors 1 refusals: closing the connection\n" +
				"LOG: SMTP call from (client.test) [198.51.100.1] dropped: too many syntax or protocol errors (more than smtp.max_errors=1 refusals)\n",
		},
		{
			name:    "trusted network relays; IPv4-mapped peer",
			ip:      "::ffff:192.0.2.7",
			script:  "EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<u@other.test>\r\nRCPT TO:<u%x@example.test>\r\nQUIT\r\n",
			wantOut: []string{"**** SMTP testing session as if from host 192.0.2.7\n", "250 2.1.5 Recipient OK\r\n", "550 5.7.1 Restricted characters in address\r\n"},
			wantTrace: ">>> host in relay.trusted_networks? yes: may relay to any domain\n" +
				">>> MAIL <a@client.test>: accepted\n" +
				">>> RCPT <u@other.test>: accepted: host in relay.trusted_networks\n" +
				">>> RCPT <u%x@example.test>: Restricted characters in address\n" +
				"LOG: H=(client.test) [192.0.2.7] F=<a@client.test> rejected RCPT <u%x@example.test>: Restricted characters in address\n",
		},
		{
			name:      "input ends without QUIT",
			ip:        "198.51.100.1",
			script:    "EHLO client.test\r\n",
			wantOut:   []string{"250 LIMITS RCPTMAX=100\r\n"},
			wantTrace: ">>> host in relay.trusted_networks? no\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, trace := testSession(t, tt.edit, tt.ip, tt.script)
			rest := out
			for _, w := range tt.wantOut {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("output lacks %q (in order):\n%s", w, out)
					break
				}
				rest = rest[i+len(w):]
			}
			if trace != tt.wantTrace {
				t.Errorf("trace:\n%s\nwant:\n%s", trace, tt.wantTrace)
			}
		})
	}
}

func TestServeTestNoTLS(t *testing.T) {
	cert, key := tlstest.Files(t, "mx.example.test")
	out, trace := testSession(t, func(c *config.Config) { c.TLS.Cert, c.TLS.Key = cert, key }, "198.51.100.1", "EHLO client.test\r\nQUIT\r\n")
	if strings.Contains(out, "STARTTLS") {
		t.Errorf("STARTTLS offered:\n%s", out)
	}
	if want := ">>> host in relay.trusted_networks? no\n>>> STARTTLS not offered: a test session has no TLS\n"; trace != want {
		t.Errorf("trace:\n%s\nwant:\n%s", trace, want)
	}
}

func TestServeTestNeedsTrace(t *testing.T) {
	ts := newTestServer(t, nil)
	err := ts.srv.ServeTest(netip.MustParseAddrPort("192.0.2.1:1"), strings.NewReader(""), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "Options.Trace") {
		t.Errorf("ServeTest on a daemon: %v", err)
	}
}

func TestCRLFReader(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"\n\n", "\r\n\r\n"},
		{"mixed\r\nends\nhere\r\n", "mixed\r\nends\r\nhere\r\n"},
		{"bare\rcr\n", "bare\rcr\r\n"},
		{"cr at end\r", "cr at end\r"},
		{"no end", "no end"},
	}
	for _, tt := range tests {
		// One byte at a time and in big reads, with a reader that returns
		// data and EOF together.
		for name, r := range map[string]io.Reader{
			"one byte":   iotest.OneByteReader(&crlfReader{r: strings.NewReader(tt.in)}),
			"half reads": iotest.HalfReader(&crlfReader{r: strings.NewReader(tt.in)}),
			"data+EOF":   &crlfReader{r: iotest.DataErrReader(strings.NewReader(tt.in))},
		} {
			got, err := io.ReadAll(r)
			if err != nil || string(got) != tt.want {
				t.Errorf("%s: %q -> %q, %v; want %q", name, tt.in, got, err, tt.want)
			}
		}
	}
}
