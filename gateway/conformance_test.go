package gateway

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"mxgate/config"
)

// SMTP conformance where go-smtp's server fell short, fixed in our fork
// (third_party/go-smtp, doc/go-smtp-fork.md) or in the gateway: exact
// reply codes, on every transport where the transport matters.

// transports are the three ways a client reaches the gateway; each dial
// returns a client that has read the banner and said EHLO. The server
// must have been made with withTLS.
var transports = []struct {
	name string
	dial func(t *testing.T, ts *testServer) *client
}{
	{"plain", func(t *testing.T, ts *testServer) *client {
		c := dial(t, ts.addr(0))
		c.greet()
		return c
	}},
	{"starttls", func(t *testing.T, ts *testServer) *client {
		c := dial(t, ts.addr(0))
		c.greet()
		c.expect("STARTTLS", "220 ")
		tc := tls.Client(c.c, tlsClientConfig())
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c = newClient(t, tc)
		c.expect("EHLO client.test", "250-Hello client.test")
		return c
	}},
	{"implicit-tls", func(t *testing.T, ts *testServer) *client {
		conn, err := tls.Dial("tcp", ts.addr(1), tlsClientConfig())
		if err != nil {
			t.Fatal(err)
		}
		c := newClient(t, conn)
		c.greet()
		return c
	}},
}

// edits applies several config edits in turn.
func edits(fs ...func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		for _, f := range fs {
			f(c)
		}
	}
}

// TestConformanceDataEnd: whatever comes before it, <CRLF>.<CRLF> ends
// DATA at once (a command pipelined after it is a command), and a bare CR
// or LF anywhere in the message, "<CRLF>.<CR>" included, is refused with
// 550 5.5.2 on every transport (accepted and normalised with
// bare_newline = "normalize").
func TestConformanceDataEnd(t *testing.T) {
	const next = "MAIL FROM:<evil@client.test>\r\nRCPT TO:<victim@example.test>\r\n"
	bodies := []struct {
		name, data string
		bare       bool
	}{
		{"clean", "Subject: s\r\n\r\nline\r\n", false},
		{"stray CR before CRLF", "Subject: s\r\n\r\nline\r\r\n", true},
		{"stray CRs in header and body", "Subject: s\r\r\n\r\nline\r\r\r\n", true},
		{"dot CR CRLF", "Subject: s\r\n\r\nline\r\n.\r\r\n", true},
		{"CRLF.CR", "Subject: s\r\n\r\nlegit\r\n.\r" + next, true},
		{"CRLF.CR at the start", ".\r" + next, true},
		{"CR.CRLF", "Subject: s\r\n\r\nlegit\r.\r\n" + next, true},
		{"LF.LF", "Subject: s\r\n\r\nlegit\n.\n" + next, true},
		{"LF.CRLF", "Subject: s\r\n\r\nlegit\n.\r\n" + next, true},
		{"CRLF.LF", "Subject: s\r\n\r\nlegit\r\n.\n" + next, true},
	}
	for _, mode := range []string{"reject", "normalize"} {
		t.Run(mode, func(t *testing.T) {
			ts := newTestServer(t, edits(withTLS(t), func(c *config.Config) {
				c.SMTP.BareNewline = mode
				c.SMTP.MaxErrors = 100
			}))
			for _, tr := range transports {
				for _, b := range bodies {
					t.Run(tr.name+"/"+b.name, func(t *testing.T) {
						c := tr.dial(t, ts)
						c.expect("MAIL FROM:<a@client.test>", "250 2.1.0 Sender OK")
						c.expect("RCPT TO:<u@example.test>", "250 2.1.5 Recipient OK")
						c.expect("DATA", "354 ")
						// The end of data and the next command in one write.
						start := time.Now()
						c.send(b.data + ".\r\nNOOP\r\n")
						got := c.reply()
						if d := time.Since(start); d > 5*time.Second {
							t.Errorf("end of data answered after %v", d)
						}
						want := "250 2.0.0 OK id="
						if b.bare && mode == "reject" {
							want = "550 5.5.2 " + bareNewlineText
						}
						if !strings.HasPrefix(got, want) {
							t.Fatalf("end of data -> %q, want %q", got, want)
						}
						// The pipelined NOOP was read as a command; the
						// smuggled MAIL and RCPT were message text.
						c.expect("", "250 2.0.0 OK")
						c.expect("QUIT", "221 ")
					})
				}
			}
			for _, id := range ts.queued() {
				env, err := ts.spool.Load(id)
				if err != nil {
					t.Fatal(err)
				}
				if env.Sender != "a@client.test" || len(env.Recipients) != 1 || env.Recipients[0] != "u@example.test" {
					t.Errorf("message %s: <%s> -> %v: a smuggled transaction ran", id, env.Sender, env.Recipients)
				}
				if m := ts.message(id); strings.Contains(m, "\r") {
					t.Errorf("message %s holds a CR: %q", id, m)
				}
			}
			n := len(ts.queued())
			want := len(transports) * len(bodies)
			if mode == "reject" {
				want = len(transports) // only the clean one
			}
			if n != want {
				t.Errorf("queued %d messages, want %d", n, want)
			}
		})
	}
}

// TestConformanceDotCRContent: the CR after a leading dot is content, not
// swallowed with the dot: normalised, the line "." + CR + "x" is "x".
func TestConformanceDotCRContent(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) { c.SMTP.BareNewline = "normalize" })
	c := dial(t, ts.addr(0))
	c.greet()
	c.sendRaw("Subject: s\r\n\r\na\r\n.\rx\r\n..y\r\n.\r\n")
	id := ts.onlyID()
	if m := ts.message(id); !strings.HasSuffix(m, "\n\na\nx\n.y\n") {
		t.Errorf("stored %q", m)
	}
}

// TestConformanceReplyCodes: sequence errors are 503 5.5.1 (RFC 5321
// 4.3.2), an unknown command is 500 5.5.1 whatever its length, MAIL and
// RCPT speak like an MTA.
func TestConformanceReplyCodes(t *testing.T) {
	tests := []struct {
		name  string
		setup []string // commands before, each answered with 2xx/3xx
		cmd   string
		want  string // the whole reply
	}{
		{"MAIL before EHLO", nil, "MAIL FROM:<a@client.test>", "503 5.5.1 "},
		{"MAIL before HELO, null sender", nil, "MAIL FROM:<>", "503 5.5.1 "},
		{"RCPT before MAIL", []string{"EHLO client.test"}, "RCPT TO:<u@example.test>", "503 5.5.1 "},
		{"DATA before MAIL", []string{"EHLO client.test"}, "DATA", "503 5.5.1 "},
		{"DATA before RCPT", []string{"EHLO client.test", "MAIL FROM:<a@client.test>"}, "DATA", "503 5.5.1 "},
		{"RCPT after RSET", []string{"EHLO client.test", "MAIL FROM:<a@client.test>", "RSET"}, "RCPT TO:<u@example.test>", "503 5.5.1 "},
		{"nested MAIL", []string{"EHLO client.test", "MAIL FROM:<a@client.test>"}, "MAIL FROM:<b@client.test>", "503 5.5.1 "},
		{"unknown, 1 letter", nil, "X", "500 5.5.1 "},
		{"unknown, 3 letters", nil, "XYZ", "500 5.5.1 "},
		{"unknown, 4 letters", nil, "XYZW", "500 5.5.1 "},
		{"unknown, 5 letters", nil, "XYZZY", "500 5.5.1 "},
		{"unknown, 5 letters with argument", nil, "XYZZY plugh", "500 5.5.1 "},
		{"unknown, long", []string{"EHLO client.test"}, strings.Repeat("Q", 100) + " x", "500 5.5.1 "},
		{"unknown, a known verb run on", []string{"EHLO client.test"}, "MAILX FROM:<a@client.test>", "500 5.5.1 "},
		{"MAIL accepted", []string{"EHLO client.test"}, "MAIL FROM:<a@client.test>", "250 2.1.0 Sender OK"},
		{"null sender accepted", []string{"HELO client.test"}, "MAIL FROM:<>", "250 2.1.0 Sender OK"},
		{"RCPT accepted", []string{"EHLO client.test", "MAIL FROM:<a@client.test>"}, "RCPT TO:<u@example.test>", "250 2.1.5 Recipient OK"},
		{"NOOP", nil, "NOOP", "250 2.0.0 OK"},
		{"RSET", nil, "RSET", "250 2.0.0 Reset OK"},
		{"DATA", []string{"EHLO client.test", "MAIL FROM:<a@client.test>", "RCPT TO:<u@example.test>"}, "DATA", "354 End data with <CR><LF>.<CR><LF>"},
	}
	ts := newTestServer(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, ts.addr(0))
			c.expect("", "220 ")
			for _, cmd := range tt.setup {
				if got := c.reply2(cmd); got[0] != '2' && got[0] != '3' {
					t.Fatalf("%q -> %q", cmd, got)
				}
			}
			got := c.reply2(tt.cmd)
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("%q -> %q, want %q", tt.cmd, got, tt.want)
			}
			for _, lib := range []string{"Roger", "make sure", "Go ahead", "successfully done nothing"} {
				if strings.Contains(got, lib) {
					t.Errorf("%q -> %q: go-smtp's example wording", tt.cmd, got)
				}
			}
		})
	}
}

// TestConformanceSize: EHLO advertises SIZE as exactly max_message_size;
// MAIL SIZE= up to it is accepted and above it refused 552 5.3.4 however
// many digits (RFC 1870 allows 20); a message of exactly the maximum is
// accepted, one byte more is refused.
func TestConformanceSize(t *testing.T) {
	const max = 100
	ts := newTestServer(t, edits(withTLS(t), func(c *config.Config) {
		c.SMTP.MaxMessageSize = max
		c.SMTP.MaxErrors = 100
	}))
	c := dial(t, ts.addr(0))
	c.expect("", "220 ")
	ehlo := c.expect("EHLO client.test", "250-Hello client.test")
	if !strings.Contains(ehlo+"\n", fmt.Sprintf("250-SIZE %d\n", max)) {
		t.Errorf("EHLO does not advertise SIZE %d:\n%s", max, ehlo)
	}
	for _, tt := range []struct {
		size, want string
	}{
		{"0", "250 2.1.0 Sender OK"},
		{"100", "250 2.1.0 Sender OK"},
		{"0000000000000000100", "250 2.1.0 Sender OK"},
		{"101", "552 5.3.4 "},
		{"4294967295", "552 5.3.4 "},
		{"4294967296", "552 5.3.4 "},
		{"9223372036854775808", "552 5.3.4 "},
		{"18446744073709551616", "552 5.3.4 "},
		{"99999999999999999999", "552 5.3.4 "},
		{"123456789012345678901", "501 5.5.4 "}, // 21 digits: not a size-value
		{"-1", "501 5.5.4 "},
		{"1e3", "501 5.5.4 "},
		{"", "501 5.5.4 "},
	} {
		got := c.reply2("MAIL FROM:<a@client.test> SIZE=" + tt.size)
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("SIZE=%s -> %q, want %q", tt.size, got, tt.want)
		}
		c.expect("RSET", "250 ")
	}

	// Size counts the message as sent in DATA, CRLF and all, without
	// dot-stuffing and without the final ".\r\n".
	exact := "Subject: s\r\n\r\n" + strings.Repeat("x", max-len("Subject: s\r\n\r\n")-2) + "\r\n"
	if len(exact) != max {
		t.Fatalf("test message is %d bytes", len(exact))
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c := tr.dial(t, ts)
			for _, tt := range []struct {
				name, msg, want string
			}{
				{"exactly max", exact, "250 2.0.0 OK id="},
				{"exactly max, dot-stuffed", ".." + exact[1:], "250 2.0.0 OK id="},
				{"one more", "X" + exact, "552 5.3.4 "},
				{"one more, in the last line", exact[:max-2] + "y\r\n", "552 5.3.4 "},
			} {
				c.expect("MAIL FROM:<a@client.test> SIZE=100", "250 ")
				c.expect("RCPT TO:<u@example.test>", "250 ")
				c.expect("DATA", "354 ")
				c.send(tt.msg + ".\r\n")
				if got := c.reply(); !strings.HasPrefix(got, tt.want) {
					t.Errorf("%s -> %q, want %q", tt.name, got, tt.want)
				}
			}
			c.expect("NOOP", "250 ")
		})
	}
}

// TestConformanceMaxErrors: every error reply counts against
// smtp.max_errors, whatever its kind and on every transport; the one past
// the limit is a 421 and the connection closes, with a rejectlog line.
func TestConformanceMaxErrors(t *testing.T) {
	const maxErrors = 10
	kinds := []struct {
		name  string
		setup []string
		cmd   string
		want  string
	}{
		{"unknown command", nil, "XYZZY", "500 5.5.1 "},
		{"bad syntax", nil, "MAIL TO:<a@client.test>", "501 5.5.2 "},
		{"bad sequence", nil, "RCPT TO:<u@example.test>", "503 5.5.1 "},
		{"bad address", nil, "MAIL FROM:<a@client.test.>", "501 5.1.7 "},
		{"relay refused", []string{"MAIL FROM:<a@client.test>"}, "RCPT TO:<u@other.test>", "550 5.7.1 "},
		{"size refused", nil, "MAIL FROM:<a@client.test> SIZE=99999999999999999999", "552 5.3.4 "},
	}
	ts := newTestServer(t, edits(withTLS(t), func(c *config.Config) { c.SMTP.MaxErrors = maxErrors }))
	for _, tr := range transports {
		for _, k := range kinds {
			t.Run(tr.name+"/"+k.name, func(t *testing.T) {
				c := tr.dial(t, ts)
				for _, cmd := range k.setup {
					c.expect(cmd, "250 ")
				}
				for i := 1; i <= 200; i++ {
					got := c.reply2(k.cmd)
					if i <= maxErrors {
						if !strings.HasPrefix(got, k.want) {
							t.Fatalf("error %d: %q -> %q, want %q", i, k.cmd, got, k.want)
						}
						continue
					}
					if got != "421 4.7.0 mx.example.test Too many errors, closing connection" {
						t.Fatalf("error %d: %q -> %q, want the 421", i, k.cmd, got)
					}
					if rest := c.rest(); rest != "" {
						t.Errorf("after the 421 got %q, want the connection closed", rest)
					}
					return
				}
			})
		}
	}

	// Kinds mixed in one session count together; the limit holds across
	// STARTTLS.
	c := dial(t, ts.addr(0))
	c.expect("", "220 ")
	for i, tt := range []struct{ cmd, want string }{
		{"MAIL FROM:<a@client.test>", "503 5.5.1 "},
		{"XYZZY", "500 5.5.1 "},
		{"EHLO client.test", "250-"},
		{"RCPT TO:<u@example.test>", "503 5.5.1 "},
		{"MAIL FROM:<a@client.test> SIZE=x", "501 5.5.4 "},
		{"MAIL FROM:<a@client.test>", "250 "},
		{"RCPT TO:<u@other.test>", "550 5.7.1 "},
		{"MAIL FROM:<b@client.test>", "503 5.5.1 "},
		{"DATA", "503 5.5.1 "},
		{"STARTTLS", "220 "},
	} {
		if got := c.reply2(tt.cmd); !strings.HasPrefix(got, tt.want) {
			t.Fatalf("command %d: %q -> %q, want %q", i, tt.cmd, got, tt.want)
		}
	}
	tc := tls.Client(c.c, tlsClientConfig())
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = newClient(t, tc)
	// Seven errors so far: three more are answered, the eleventh is not.
	for i := range 3 {
		if got := c.reply2("NOPE"); !strings.HasPrefix(got, "500 5.5.1 ") {
			t.Fatalf("error %d under TLS -> %q", 8+i, got)
		}
	}
	if got := c.reply2("NOPE"); got != "421 4.7.0 mx.example.test Too many errors, closing connection" {
		t.Fatalf("eleventh error -> %q, want the 421", got)
	}
	if rest := c.rest(); rest != "" {
		t.Errorf("after the 421 got %q", rest)
	}

	rl := ts.logFile("rejectlog")
	for _, want := range []string{
		fmt.Sprintf(" SMTP call from [127.0.0.1] dropped: too many syntax or protocol errors (more than smtp.max_errors=%d refusals)\n", maxErrors),
		fmt.Sprintf(" SMTP call from (client.test) [127.0.0.1] dropped: too many syntax or protocol errors (more than smtp.max_errors=%d refusals)\n", maxErrors),
	} {
		if !strings.Contains(rl, want) {
			t.Errorf("rejectlog lacks %q:\n%s", want, rl)
		}
	}
	if n := strings.Count(rl, "dropped: too many syntax or protocol errors"); n != len(transports)*len(kinds)+1 {
		t.Errorf("rejectlog has %d too-many-errors lines, want %d:\n%s", n, len(transports)*len(kinds)+1, rl)
	}
}
