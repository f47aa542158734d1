package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"mxgate/config"
)

func TestEHLOKeywords(t *testing.T) {
	tlsOn := withTLS(t)
	tests := []struct {
		name     string
		edit     func(*config.Config)
		listener int
		implicit bool
		starttls bool
	}{
		{name: "plain without TLS config", listener: 0},
		{name: "plain with TLS config", edit: tlsOn, listener: 0, starttls: true},
		{name: "implicit TLS", edit: tlsOn, listener: 1, implicit: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, func(c *config.Config) {
				c.SMTP.MaxMessageSize = 1000
				if tt.edit != nil {
					tt.edit(c)
				}
			})
			var c *client
			if tt.implicit {
				conn, err := tls.Dial("tcp", ts.addr(tt.listener), tlsClientConfig())
				if err != nil {
					t.Fatal(err)
				}
				c = newClient(t, conn)
			} else {
				c = dial(t, ts.addr(tt.listener))
			}
			c.expect("", "220 mx.example.test ESMTP")
			got := c.expect("EHLO client.test", "250-Hello client.test")
			keywords := map[string]bool{}
			for _, l := range strings.Split(got, "\n")[1:] {
				keywords[l[4:]] = true
			}
			for _, k := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "SIZE 1000"} {
				if !keywords[k] {
					t.Errorf("EHLO reply lacks %q:\n%s", k, got)
				}
			}
			if keywords["STARTTLS"] != tt.starttls {
				t.Errorf("STARTTLS advertised = %v, want %v:\n%s", keywords["STARTTLS"], tt.starttls, got)
			}
		})
	}
}

func TestRelayPolicy(t *testing.T) {
	const (
		ok         = "250 "
		relay      = "550 5.7.1 relay not permitted"
		restricted = "550 5.7.1 Restricted characters in address"
		syntax     = "501 5.1.3 Bad recipient address syntax"
		goSyntax   = "501 5.5.2 " // refused by go-smtp's parser before the policy
	)
	tests := []struct {
		rcpt      string // as written after "RCPT TO:"
		untrusted string
		trusted   string
	}{
		{"<u@example.test>", ok, ok},
		{"<u@EXAMPLE.TEST>", ok, ok},
		{"<u@other.test>", relay, ok},
		{"<u@OTHER.TEST>", relay, ok},
		{"<u%other.test@example.test>", restricted, restricted},
		{"<other.test!u@example.test>", restricted, restricted},
		{"<@example.test:u@other.test>", relay, ok},
		{"<@a.test,@b.test:u@other.test>", relay, ok},
		{"<\"u@other.test\"@example.test>", restricted, restricted},
		{"<\"u%other.test\"@example.test>", restricted, restricted},
		{"<\"@other.test:u\"@example.test>", restricted, restricted},
		{"<u@[192.0.2.1]>", relay, relay},
		{"<u@[IPv6:::1]>", relay, relay},
		{"<u@example.test.>", syntax, syntax},
		{"<u@other.test.>", syntax, syntax},
		{"<.u@example.test>", restricted, restricted},
		{"<|/bin/sh@example.test>", restricted, restricted},
		{"</etc/passwd@example.test>", restricted, restricted},
		{"<u@192.0.2.1>", syntax, syntax},
		{"<postmaster>", goSyntax, goSyntax},
		{"<\"john doe\"@example.test>", ok, ok},
	}
	for _, trusted := range []bool{false, true} {
		t.Run(fmt.Sprintf("trusted=%v", trusted), func(t *testing.T) {
			ts := newTestServer(t, func(c *config.Config) {
				c.SMTP.MaxErrors = 100
				if trusted {
					c.Relay.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
				}
			})
			c := dial(t, ts.addr(0))
			c.greet()
			c.expect("MAIL FROM:<a@client.test>", "250 ")
			for _, tt := range tests {
				want := tt.untrusted
				if trusted {
					want = tt.trusted
				}
				got := c.reply2("RCPT TO:" + tt.rcpt)
				if !strings.HasPrefix(got, want) {
					t.Errorf("RCPT TO:%s -> %q, want %q", tt.rcpt, got, want)
				}
			}
			c.expect("QUIT", "221 ")
			c.rest()
			if trusted {
				return
			}
			rl := ts.logFile("rejectlog")
			for _, want := range []string{
				" H=(client.test) [127.0.0.1] F=<a@client.test> rejected RCPT <u@other.test>: relay not permitted\n",
				" H=(client.test) [127.0.0.1] F=<a@client.test> rejected RCPT <u%other.test@example.test>: Restricted characters in address\n",
				" H=(client.test) [127.0.0.1] F=<a@client.test> rejected RCPT <u@[192.0.2.1]>: relay not permitted\n",
			} {
				if !strings.Contains(rl, want) {
					t.Errorf("rejectlog lacks %q:\n%s", want, rl)
				}
			}
		})
	}
}

// reply2 sends cmd and returns whatever the reply is.
func (c *client) reply2(cmd string) string {
	c.t.Helper()
	c.send(cmd + "\r\n")
	return c.reply()
}

// TestSmuggling sends a legitimate message whose end is written with bare
// line ends, followed by a second transaction, then the real end of data.
// A server that took the bare form for the end would run the second
// transaction.
func TestSmuggling(t *testing.T) {
	const smuggled = "MAIL FROM:<evil@client.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n" +
		"Subject: smuggled\r\n\r\nsmuggled body\r\n"
	variants := []struct {
		name, end string
	}{
		{"LF.LF", "\n.\n"},
		{"LF.CRLF", "\n.\r\n"},
		{"CRLF.LF", "\r\n.\n"},
		{"CR.CRLF", "\r.\r\n"},
		// Upstream go-smtp dropped this "." and CR; our fork's DATA
		// reader passes the CR on (doc/go-smtp-fork.md).
		{"CRLF.CR", "\r\n.\r"},
		{"bare LF in header", "\r\nX-Bad: a\nb\r\n"},
	}
	for _, mode := range []string{"reject", "normalize"} {
		for _, v := range variants {
			t.Run(mode+"/"+v.name, func(t *testing.T) {
				ts := newTestServer(t, func(c *config.Config) { c.SMTP.BareNewline = mode })
				c := dial(t, ts.addr(0))
				c.greet()
				c.expect("MAIL FROM:<a@client.test>", "250 ")
				c.expect("RCPT TO:<u@example.test>", "250 ")
				c.expect("DATA", "354 ")
				body := "Subject: legit\r\n\r\nlegit body"
				if strings.HasPrefix(v.name, "bare LF in header") {
					body = "Subject: legit" + v.end + "\r\nlegit body"
				} else {
					body += v.end
				}
				c.send(body + smuggled + ".\r\n")
				got := c.reply()
				refused := mode == "reject"
				if refused {
					if got != "550 5.5.2 "+bareNewlineText {
						t.Fatalf("end of data -> %q, want the 550 5.5.2 refusal", got)
					}
				} else if !strings.HasPrefix(got, "250 2.0.0 OK id=") {
					t.Fatalf("end of data -> %q, want 250", got)
				}
				// The next reply must be the one to this RSET: the
				// smuggled commands were part of the message.
				c.expect("RSET", "250 2.0.0 Reset OK")
				legit := c.sendMessage("a@client.test", []string{"u@example.test"}, "Subject: after\n\nafter\n")
				if !strings.HasPrefix(legit, "250 2.0.0 OK id=") {
					t.Fatalf("following message -> %q", legit)
				}
				c.expect("QUIT", "221 ")

				ids := ts.queued()
				want := 2
				if refused {
					want = 1
				}
				if len(ids) != want {
					t.Fatalf("spool holds %d messages, want %d", len(ids), want)
				}
				smuggledSeen := 0
				for _, id := range ids {
					env, err := ts.spool.Load(id)
					if err != nil {
						t.Fatal(err)
					}
					if len(env.Recipients) != 1 || env.Recipients[0] != "u@example.test" {
						t.Errorf("message %s is for %v", id, env.Recipients)
					}
					m := ts.message(id)
					if strings.Contains(m, "\r") {
						t.Errorf("message %s holds a CR: %q", id, m)
					}
					if strings.Contains(m, "smuggled body") {
						smuggledSeen++
					}
				}
				if !refused && smuggledSeen != 1 {
					t.Errorf("the smuggled text is in %d messages, want 1 (as content of the first)", smuggledSeen)
				}
				if refused {
					if smuggledSeen != 0 {
						t.Error("a refused message was queued")
					}
					if rl := ts.logFile("rejectlog"); !strings.Contains(rl, "rejected after DATA: bare CR or LF in message") {
						t.Errorf("rejectlog lacks the refusal:\n%s", rl)
					}
				}
			})
		}
	}
}

func TestNormalizedMessageContent(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) { c.SMTP.BareNewline = "normalize" })
	c := dial(t, ts.addr(0))
	c.greet()
	c.sendRaw("Subject: n\nX-A: 1\r\n\r\nbare LF\nbare\rCR\r\n.\nend\r\n.\r\n")
	id := ts.onlyID()
	m := ts.message(id)
	// go-smtp takes the "." of "\r\n.\n" for dot-stuffing and drops it.
	want := "Subject: n\nX-A: 1\n\nbare LF\nbareCR\n\nend\n"
	if !strings.HasSuffix(m, want) {
		t.Errorf("message = %q, want it to end with %q", m, want)
	}
}

func TestStartTLSInjection(t *testing.T) {
	ts := newTestServer(t, withTLS(t))
	c := dial(t, ts.addr(0))
	c.greet()
	c.send("STARTTLS\r\nMAIL FROM:<inject@evil.test>\r\n")
	c.expect("", "220 2.0.0 Ready to start TLS")
	if c.r.Buffered() != 0 {
		t.Fatalf("plaintext after 220: %d bytes", c.r.Buffered())
	}
	tc := tls.Client(c.c, tlsClientConfig())
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = newClient(t, tc)
	// Had the injected MAIL run, its 250 would come before EHLO's reply,
	// and MAIL would now be refused as nested.
	got := c.expect("EHLO client.test", "250-Hello client.test")
	if strings.Contains(got, "STARTTLS") {
		t.Errorf("STARTTLS offered again under TLS:\n%s", got)
	}
	reply := c.sendMessage("a@client.test", []string{"u@example.test"}, "Subject: tls\n\nover TLS\n")
	if !strings.HasPrefix(reply, "250 2.0.0 OK id=") {
		t.Fatalf("DATA -> %q", reply)
	}
	c.expect("QUIT", "221 ")
	id := ts.onlyID()
	env, err := ts.spool.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	if env.Sender != "a@client.test" || env.ReceivedProtocol != "esmtps" {
		t.Errorf("sender %q protocol %q, want a@client.test esmtps", env.Sender, env.ReceivedProtocol)
	}
	if !strings.Contains(env.Headers[0].Text, " with ESMTPS id ") {
		t.Errorf("Received: %q lacks ESMTPS", env.Headers[0].Text)
	}
	ml := ts.logFile("mainlog")
	if !regexp.MustCompile(` <= a@client\.test H=\(client\.test\) \[127\.0\.0\.1\]:\d+ P=esmtps X=TLS1\.3:TLS_[A-Z0-9_]+:\d+ CV=no S=\d+\n`).MatchString(ml) {
		t.Errorf("mainlog lacks the TLS arrival line:\n%s", ml)
	}
}

func TestStartTLSHandshakeFailureCloses(t *testing.T) {
	ts := newTestServer(t, withTLS(t))
	c := dial(t, ts.addr(0))
	c.greet()
	c.send("STARTTLS\r\nMAIL FROM:<inject@evil.test>\r\n")
	c.expect("", "220 2.0.0 Ready to start TLS")
	c.send("this is not a TLS client hello\r\n\r\n")
	rest := c.rest()
	if !strings.HasSuffix(rest, "550 5.0.0 Handshake error\r\n") {
		t.Errorf("after the failed handshake got %q, want the 550 and then the connection closed", rest)
	}
	if strings.Contains(rest, "250") {
		t.Errorf("the injected MAIL ran in plaintext: %q", rest)
	}
}

func TestImplicitTLS(t *testing.T) {
	ts := newTestServer(t, withTLS(t))
	conn, err := tls.Dial("tcp", ts.addr(1), tlsClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, conn)
	c.greet()
	reply := c.sendMessage("", []string{"u@example.test"}, "Subject: 465\n\nimplicit\n")
	if !strings.HasPrefix(reply, "250 2.0.0 OK id=") {
		t.Fatalf("DATA -> %q", reply)
	}
	c.expect("QUIT", "221 ")
	id := ts.onlyID()
	env, err := ts.spool.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	if env.Sender != "" || env.ReceivedProtocol != "esmtps" {
		t.Errorf("sender %q protocol %q, want null sender over esmtps", env.Sender, env.ReceivedProtocol)
	}
	if !strings.Contains(ts.logFile("mainlog"), " <= <> H=(client.test) [127.0.0.1]:") {
		t.Errorf("mainlog lacks the null-sender arrival:\n%s", ts.logFile("mainlog"))
	}
}

func TestConnectionLimits(t *testing.T) {
	tests := []struct {
		name           string
		total, perIP   int
		wantLogReason  string
		wantRefusedNth int // the connection (1-based) that is refused
	}{
		{"total", 2, 10, "Connection from [127.0.0.1] refused: too many connections\n", 3},
		{"per IP", 10, 1, "Connection from [127.0.0.1] refused: too many connections from that IP address\n", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, func(c *config.Config) {
				c.SMTP.MaxConnections = tt.total
				c.SMTP.MaxConnectionsPerIP = tt.perIP
			})
			var open []*client
			for range tt.wantRefusedNth - 1 {
				c := dial(t, ts.addr(0))
				c.expect("", "220 ")
				open = append(open, c)
			}
			refused := dial(t, ts.addr(0))
			if got := refused.rest(); got != "421 4.7.0 mx.example.test Too many connections, try again later\r\n" {
				t.Errorf("over the limit got %q", got)
			}
			if ml := ts.logFile("mainlog"); !strings.Contains(ml, tt.wantLogReason) {
				t.Errorf("mainlog lacks %q:\n%s", tt.wantLogReason, ml)
			}
			// A slot is free again once a client has gone.
			open[0].expect("QUIT", "221 ")
			open[0].rest()
			again := dial(t, ts.addr(0))
			again.expect("", "220 mx.example.test ESMTP")
		})
	}
}

func TestMaxErrors(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) { c.SMTP.MaxErrors = 2 })
	c := dial(t, ts.addr(0))
	c.greet()
	c.expect("MAIL FROM:<a@client.test>", "250 ")
	c.expect("RCPT TO:<u@other.test>", "550 5.7.1 relay not permitted")
	c.expect("RCPT TO:<v@other.test>", "550 5.7.1 relay not permitted")
	c.send("RCPT TO:<w@other.test>\r\nRCPT TO:<u@example.test>\r\n")
	if got := c.rest(); got != "421 4.7.0 mx.example.test Too many errors, closing connection\r\n" {
		t.Errorf("third error -> %q, want the 421 and the connection closed", got)
	}
}

func TestMaxRecipients(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) { c.SMTP.MaxRecipients = 2 })
	c := dial(t, ts.addr(0))
	c.greet()
	c.expect("MAIL FROM:<a@client.test>", "250 ")
	c.expect("RCPT TO:<u1@example.test>", "250 ")
	c.expect("RCPT TO:<u2@example.test>", "250 ")
	c.expect("RCPT TO:<u3@example.test>", "452 4.5.3 Maximum limit of 2 recipients reached")
	c.expect("DATA", "354 ")
	c.send(wire("Subject: two\n\nbody\n"))
	c.expect("", "250 2.0.0 OK id=")
	id := ts.onlyID()
	env, err := ts.spool.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(env.Recipients, " ") != "u1@example.test u2@example.test" {
		t.Errorf("recipients %v", env.Recipients)
	}
	if strings.Contains(env.Headers[0].Text, "for <") {
		t.Errorf("Received: names a recipient of two: %q", env.Headers[0].Text)
	}
}

func TestSizeLimit(t *testing.T) {
	const max = 100
	// Size counts the message as sent in DATA, CRLF and all, without
	// dot-stuffing and without the final ".\r\n".
	exact := "Subject: s\r\n\r\n" + strings.Repeat("x", max-len("Subject: s\r\n\r\n")-2) + "\r\n"
	if len(exact) != max {
		t.Fatalf("test message is %d bytes", len(exact))
	}
	ts := newTestServer(t, func(c *config.Config) { c.SMTP.MaxMessageSize = max })
	c := dial(t, ts.addr(0))
	c.greet()
	c.expect(fmt.Sprintf("MAIL FROM:<a@client.test> SIZE=%d", max+1), "552 5.3.4 ")
	c.expect(fmt.Sprintf("MAIL FROM:<a@client.test> SIZE=%d", max), "250 ")
	c.expect("RSET", "250 ")
	for _, tt := range []struct {
		msg  string
		want string
	}{
		{exact, "250 2.0.0 OK id="},
		{"X" + exact, "552 5.3.4 Message size exceeds maximum permitted"},
		{exact + strings.Repeat(strings.Repeat("y", 98)+"\r\n", 100), "552 5.3.4 Message size exceeds maximum permitted"},
	} {
		c.expect("MAIL FROM:<a@client.test>", "250 ")
		c.expect("RCPT TO:<u@example.test>", "250 ")
		c.expect("DATA", "354 ")
		c.send(tt.msg + ".\r\n")
		c.expect("", tt.want)
	}
	// The session goes on: the oversized messages were read to their end.
	c.expect("NOOP", "250 ")
	ids := ts.queued()
	if len(ids) != 1 {
		t.Fatalf("queued %v, want only the message of exactly %d bytes", ids, max)
	}
	if m := ts.message(ids[0]); !strings.HasSuffix(m, "\n\n"+strings.Repeat("x", max-16)+"\n") {
		t.Errorf("stored %q", m)
	}
}

func TestHeaderBlockLimit(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) { c.SMTP.MaxMessageSize = 4 << 20 })
	c := dial(t, ts.addr(0))
	c.greet()
	c.expect("MAIL FROM:<a@client.test>", "250 ")
	c.expect("RCPT TO:<u@example.test>", "250 ")
	c.expect("DATA", "354 ")
	// Stored with LF endings, 1011 bytes a line: 1038 lines pass 1 MiB.
	var b strings.Builder
	for range 1038 {
		b.WriteString("X-Filler: " + strings.Repeat("f", 1000) + "\r\n")
	}
	c.send(b.String() + "\r\nbody\r\n.\r\n")
	c.expect("", "552 5.3.4 Message header block too large")
	c.expect("NOOP", "250 ")
	if ids := ts.queued(); len(ids) != 0 {
		t.Errorf("queued %v", ids)
	}
}

func TestDataIdleTimeout(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) {
		c.SMTP.DataTimeout = config.Duration(200 * time.Millisecond)
	})
	c := dial(t, ts.addr(0))
	c.greet()
	c.expect("MAIL FROM:<a@client.test>", "250 ")
	c.expect("RCPT TO:<u@example.test>", "250 ")
	c.expect("DATA", "354 ")
	c.send("Subject: stalled\r\n\r\nfirst line\r\n")
	// The client now says nothing; the server must give up and close.
	if got := c.rest(); got != "421 4.4.2 mx.example.test SMTP incoming data timeout - closing connection\r\n" {
		t.Errorf("after the stall got %q", got)
	}
	if ids := ts.queued(); len(ids) != 0 {
		t.Errorf("a timed-out message was queued: %v", ids)
	}
	if ml := ts.logFile("mainlog"); !strings.Contains(ml, "SMTP data timeout (message abandoned) on connection from (client.test) [127.0.0.1] F=<a@client.test>") {
		t.Errorf("mainlog lacks the timeout:\n%s", ml)
	}
}

// TestSlowUploadWithinDataTimeout is go-smtp issue #196: its one deadline
// for the whole DATA would cut off an upload longer than the command
// timeout even though every line arrives well within the data timeout.
func TestSlowUploadWithinDataTimeout(t *testing.T) {
	ts := newTestServer(t, func(c *config.Config) {
		c.SMTP.CommandTimeout = config.Duration(time.Second)
		c.SMTP.DataTimeout = config.Duration(10 * time.Second)
	})
	c := dial(t, ts.addr(0))
	c.greet()
	c.expect("MAIL FROM:<a@client.test>", "250 ")
	c.expect("RCPT TO:<u@example.test>", "250 ")
	c.expect("DATA", "354 ")
	c.send("Subject: slow\r\n\r\n")
	for i := range 8 {
		time.Sleep(200 * time.Millisecond)
		c.send(fmt.Sprintf("line %d\r\n", i))
	}
	c.send(".\r\n")
	c.expect("", "250 2.0.0 OK id=")
	if ids := ts.queued(); len(ids) != 1 {
		t.Errorf("queued %v", ids)
	}
}

func TestBDAT(t *testing.T) {
	ts := newTestServer(t, nil)
	c := dial(t, ts.addr(0))
	c.greet()
	c.expect("MAIL FROM:<a@client.test>", "250 ")
	c.expect("RCPT TO:<u@example.test>", "250 ")
	chunk1 := "Subject: chunks\r\nMessage-ID: <bdat@client.test>\r\n\r\nfirst "
	chunk2 := "chunk\r\n.not stuffed\r\nlast\r\n"
	c.send(fmt.Sprintf("BDAT %d\r\n%s", len(chunk1), chunk1))
	c.expect("", "250 2.0.0 Continue")
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk2), chunk2))
	c.expect("", "250 2.0.0 OK id=")
	c.expect("QUIT", "221 ")
	id := ts.onlyID()
	if m := ts.message(id); !strings.HasSuffix(m, "Subject: chunks\nMessage-ID: <bdat@client.test>\n\nfirst chunk\n.not stuffed\nlast\n") {
		t.Errorf("stored %q", m)
	}
	if ml := ts.logFile("mainlog"); !strings.Contains(ml, " P=esmtp S=") || !strings.Contains(ml, " id=bdat@client.test\n") {
		t.Errorf("mainlog:\n%s", ml)
	}
}

func TestBDATBareLF(t *testing.T) {
	ts := newTestServer(t, nil)
	c := dial(t, ts.addr(0))
	c.greet()
	c.expect("MAIL FROM:<a@client.test>", "250 ")
	c.expect("RCPT TO:<u@example.test>", "250 ")
	chunk := "Subject: x\r\n\r\nbare\n.\nend\r\n"
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk), chunk))
	c.expect("", "550 5.5.2 ")
	if ids := ts.queued(); len(ids) != 0 {
		t.Errorf("queued %v", ids)
	}
}

func TestReceivedHeaderAndSpool(t *testing.T) {
	tests := []struct {
		name     string
		greeting string
		rcpts    []string
		proto    string
		with     string
		forRcpt  string
	}{
		{"EHLO one recipient", "EHLO", []string{"u@EXAMPLE.test"}, "esmtp", "ESMTP", "\n\tfor <u@example.test>"},
		{"HELO two recipients", "HELO", []string{"u@example.test", "\"john doe\"@example.test"}, "smtp", "SMTP", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, nil)
			c := dial(t, ts.addr(0))
			c.expect("", "220 ")
			c.expect(tt.greeting+" client.test", "250")
			msg := readMessage(t, "gateway-plain.eml")
			reply := c.sendMessage("alice@client.test", tt.rcpts, msg)
			c.expect("QUIT", "221 ")
			id := ts.onlyID()
			if reply != "250 2.0.0 OK id="+string(id) {
				t.Errorf("DATA -> %q, want the id %s", reply, id)
			}
			env, err := ts.spool.Load(id)
			if err != nil {
				t.Fatal(err)
			}
			var wantRcpts []string
			for _, r := range tt.rcpts {
				wantRcpts = append(wantRcpts, strings.Replace(r, "EXAMPLE", "example", 1))
			}
			if env.Sender != "alice@client.test" || strings.Join(env.Recipients, ",") != strings.Join(wantRcpts, ",") ||
				env.HeloName != "client.test" || env.ReceivedProtocol != tt.proto ||
				!strings.HasPrefix(env.HostAddress, "127.0.0.1:") || !env.DeliverFirstTime {
				t.Errorf("envelope %+v", env)
			}
			if env.BodyLinecount != 7 {
				t.Errorf("body_linecount %d, want 7", env.BodyLinecount)
			}
			h := env.Headers[0]
			wantRcv := regexp.MustCompile(`^Received: from client\.test \(\[127\.0\.0\.1\]\)\n\tby mx\.example\.test with ` + tt.with +
				` id ` + string(id) + `\n\t\(envelope-from <alice@client\.test>\)` + regexp.QuoteMeta(tt.forRcpt) +
				`; [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\n$`)
			if h.Type != 'P' || !wantRcv.MatchString(h.Text) {
				t.Errorf("first header %c %q, want our Received:", h.Type, h.Text)
			}
			types := ""
			for _, h := range env.Headers[1:] {
				types += string(h.Type)
			}
			if types != "FT I P  " {
				t.Errorf("header types %q, want \"FT I P  \"", types)
			}
			m := ts.message(id)
			if want := h.Text + msg; m != want {
				t.Errorf("message as delivered:\n%q\nwant\n%q", m, want)
			}
			line := regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ` + string(id) + ` <= alice@client\.test H=\(client\.test\) \[127\.0\.0\.1\]:\d+ P=` +
				tt.proto + ` S=` + fmt.Sprint(len(m)) + ` id=plain-1@client\.test$`)
			if ml := ts.logFile("mainlog"); !line.MatchString(ml) {
				t.Errorf("mainlog lacks the arrival line %v:\n%s", line, ml)
			}
			b, err := readFile(ts.spool.MsglogPath(id))
			if err != nil || !strings.Contains(b, " Received from alice@client.test H=(client.test) [127.0.0.1]:") {
				t.Errorf("msglog %q, %v", b, err)
			}
		})
	}
}

func TestCommitFailure(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.srv.cancel() // every commit now fails
	c := dial(t, ts.addr(0))
	c.greet()
	reply := c.sendMessage("a@client.test", []string{"u@example.test"}, "Subject: x\n\ny\n")
	if reply != "451 4.3.0 Local problem: message not queued" {
		t.Errorf("DATA -> %q", reply)
	}
	if ids := ts.queued(); len(ids) != 0 {
		t.Errorf("queued %v", ids)
	}
	if pl := ts.logFile("paniclog"); !strings.Contains(pl, "spool commit failed, message not queued") {
		t.Errorf("paniclog:\n%s", pl)
	}
}

func TestShutdownLetsSessionFinish(t *testing.T) {
	ts := newTestServer(t, nil)
	c := dial(t, ts.addr(0))
	c.greet()
	c.expect("MAIL FROM:<a@client.test>", "250 ")
	c.expect("RCPT TO:<u@example.test>", "250 ")
	c.expect("DATA", "354 ")
	c.send("Subject: in flight\r\n\r\nfirst half\r\n")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), clientDeadline)
		defer cancel()
		done <- ts.srv.Shutdown(ctx)
	}()
	// Serve returns once the listeners are closed; from then on nobody
	// new gets in.
	if err := <-ts.served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	ts.served <- nil // for the cleanup
	if conn, err := dialOnce(ts.addr(0)); err == nil {
		conn.Close()
		t.Error("a new connection was accepted during shutdown")
	}

	c.send("second half\r\n.\r\n")
	c.expect("", "250 2.0.0 OK id=")
	c.expect("MAIL FROM:<a@client.test>", "421 4.3.2 mx.example.test Service shutting down")
	if rest := c.rest(); rest != "" {
		t.Errorf("after the 421: %q", rest)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if ids := ts.queued(); len(ids) != 1 {
		t.Errorf("queued %v", ids)
	}
}

func TestShutdownDeadlineClosesSessions(t *testing.T) {
	ts := newTestServer(t, nil)
	c := dial(t, ts.addr(0))
	c.greet()
	c.expect("MAIL FROM:<a@client.test>", "250 ")
	c.expect("RCPT TO:<u@example.test>", "250 ")
	c.expect("DATA", "354 ")
	c.send("Subject: cut\r\n\r\nnever finished\r\n")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := ts.srv.Shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), "closed 1 sessions") {
		t.Errorf("Shutdown = %v, want the drain deadline error", err)
	}
	// The server closes with the rest of the message unread, which may
	// reset the connection rather than end it.
	rest, err := io.ReadAll(c.r)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("reading to the close: %v", err)
	}
	if strings.Contains(string(rest), "250") {
		t.Errorf("client got %q", rest)
	}
	if ids := ts.queued(); len(ids) != 0 {
		t.Errorf("queued %v", ids)
	}
}

func dialOnce(addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: clientDeadline}
	return d.DialContext(context.Background(), "tcp", addr)
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

func TestClientGoneMidData(t *testing.T) {
	ts := newTestServer(t, nil)
	c := dial(t, ts.addr(0))
	c.greet()
	c.expect("MAIL FROM:<a@client.test>", "250 ")
	c.expect("RCPT TO:<u@example.test>", "250 ")
	c.expect("DATA", "354 ")
	c.send("Subject: half\r\n\r\nhalf a message\r\n")
	c.c.Close()
	// Shutdown returns once every session has ended, so the DATA is over.
	ctx, cancel := context.WithTimeout(context.Background(), clientDeadline)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := ts.queued(); len(ids) != 0 {
		t.Errorf("a cut-off message was queued: %v", ids)
	}
	if ml := ts.logFile("mainlog"); !strings.Contains(ml, "SMTP connection from (client.test) [127.0.0.1] lost while reading message data") {
		t.Errorf("mainlog:\n%s", ml)
	}
}
