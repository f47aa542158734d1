package gateway

import (
	"mxgate/internal/peertest"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"mxgate/config"
)

// fakeMilter is a milter on 127.0.0.1 played by go-milter's server side:
// rcpt answers each RCPT, eom acts at the end of message.
type fakeMilter struct {
	gomilter.NoOpMilter
	mail func(from string) (gomilter.Response, error)
	rcpt func(rcpt string) (gomilter.Response, error)
	eom  func(m *gomilter.Modifier) (gomilter.Response, error)

	mu   sync.Mutex
	body []byte // what came as the message body
}

func (f *fakeMilter) BodyChunk(chunk []byte, _ *gomilter.Modifier) (gomilter.Response, error) {
	f.mu.Lock()
	f.body = append(f.body, chunk...)
	f.mu.Unlock()
	return gomilter.RespContinue, nil
}

func (f *fakeMilter) bodySeen() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return string(f.body)
}

func (f *fakeMilter) MailFrom(from string, _ *gomilter.Modifier) (gomilter.Response, error) {
	if f.mail != nil {
		return f.mail(from)
	}
	return gomilter.RespContinue, nil
}

func (f *fakeMilter) RcptTo(rcpt string, _ *gomilter.Modifier) (gomilter.Response, error) {
	if f.rcpt != nil {
		return f.rcpt(rcpt)
	}
	return gomilter.RespContinue, nil
}

func (f *fakeMilter) Headers(textproto.MIMEHeader, *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (f *fakeMilter) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	if f.eom != nil {
		return f.eom(m)
	}
	return gomilter.RespAccept, nil
}

// startMilter serves f (a *fakeMilter, or a milter built on one) until
// the test ends and returns its address.
func startMilter(t *testing.T, f gomilter.Milter) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &gomilter.Server{
		NewMilter: func() gomilter.Milter { return f },
		Actions: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptAddRcpt |
			gomilter.OptRemoveRcpt | gomilter.OptChangeFrom | gomilter.OptChangeBody,
	}
	go srv.Serve(v6Listener{ln})
	t.Cleanup(func() { srv.Close() })
	return "inet:" + ln.Addr().String()
}

// v6Listener makes go-milter's server answer option negotiation with
// version 6: v0.5.0's server says 2 while handling v6 masks, which the
// milter host rightly refuses.
type v6Listener struct{ net.Listener }

func (l v6Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	return &v6Conn{Conn: c}, err
}

type v6Conn struct {
	net.Conn
	done bool
}

func (c *v6Conn) Write(p []byte) (int, error) {
	if !c.done && len(p) >= 9 && p[4] == 'O' {
		c.done = true
		q := append([]byte(nil), p...)
		q[5], q[6], q[7], q[8] = 0, 0, 0, 6
		return c.Conn.Write(q)
	}
	return c.Conn.Write(p)
}

// hangingMilter accepts connections and never answers, as a wedged
// milter does; its connections are closed when the test ends.
func hangingMilter(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peertest.Silent(t, ln)
	return "inet:" + ln.Addr().String()
}

func withMilter(addr, onError string) func(*config.Config) {
	return func(c *config.Config) {
		c.Milters = []config.Milter{{Address: addr, Name: "fake", OnError: onError,
			ConnectTimeout: config.Duration(time.Second), CommandTimeout: config.Duration(200 * time.Millisecond),
			EOMTimeout: config.Duration(time.Second)}}
	}
}

const milterMsg = "From: a@example.net\nTo: b@example.test\nSubject: hi\n\nbody line\n"

// TestMilterRcptReject: a milter's reply to RCPT refuses that recipient
// only, with the milter's own text or Postfix's default.
func TestMilterRcptReject(t *testing.T) {
	f := &fakeMilter{rcpt: func(rcpt string) (gomilter.Response, error) {
		switch strings.Trim(rcpt, "<>") {
		case "spamtrap@example.test":
			return gomilter.NewResponseStr('y', "550 5.7.1 No spamtraps here"), nil
		case "plain@example.test":
			return gomilter.RespReject, nil
		case "later@example.test":
			return gomilter.RespTempFail, nil
		}
		return gomilter.RespContinue, nil
	}}
	ts := newTestServer(t, withMilter(startMilter(t, f), "tempfail"))
	c := dial(t, ts.addr(0))
	c.greet()
	c.expect("EHLO client.example", "250")
	c.expect("MAIL FROM:<a@example.net>", "250 ")
	for _, tt := range []struct{ rcpt, want string }{
		{"spamtrap@example.test", "550 5.7.1 No spamtraps here"},
		{"plain@example.test", "550 5.7.1 Command rejected"},
		{"later@example.test", "451 4.7.1 Service unavailable - try again later"},
		{"b@example.test", "250 "},
	} {
		if got := c.expect("RCPT TO:<"+tt.rcpt+">", tt.want[:3]); !strings.HasPrefix(got, tt.want) {
			t.Errorf("RCPT <%s> -> %q, want %q", tt.rcpt, got, tt.want)
		}
	}
	c.expect("DATA", "354 ")
	c.send(wire(milterMsg))
	if got := c.reply(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("DATA -> %q, want 250", got)
	}
	c.expect("QUIT", "221")
	ids := ts.queued()
	if len(ids) != 1 {
		t.Fatalf("queued %v, want one message", ids)
	}
	env, err := ts.spool.Load(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(env.Recipients, ","); got != "b@example.test" {
		t.Errorf("recipients = %s, want b@example.test", got)
	}
	rej := ts.logFile("rejectlog")
	for _, want := range []string{
		"rejected RCPT <spamtrap@example.test>: milter fake: 550 5.7.1 No spamtraps here",
		"rejected RCPT <later@example.test>: milter fake: 451 4.7.1 Service unavailable - try again later",
	} {
		if !strings.Contains(rej, want) {
			t.Errorf("rejectlog lacks %q:\n%s", want, rej)
		}
	}
}

// TestMilterModifications: what milters change at the end of message is
// in the spooled message, and the mainlog says what changed.
func TestMilterModifications(t *testing.T) {
	tests := []struct {
		name      string
		eom       func(m *gomilter.Modifier) error
		wantHdr   string // a line the spooled message must hold
		wantNoHdr string // a line it must not hold
		sender    string
		rcpts     string
		body      string
		log       string
	}{
		{name: "add header",
			eom:     func(m *gomilter.Modifier) error { return m.AddHeader("X-Spam-Status", "Yes, score=12") },
			wantHdr: "X-Spam-Status: Yes, score=12\n", sender: "a@example.net", rcpts: "b@example.test",
			body: "body line\n", log: "milter changed the message: added header X-Spam-Status"},
		{name: "delete header",
			eom:       func(m *gomilter.Modifier) error { return m.ChangeHeader(1, "Subject", "") },
			wantNoHdr: "Subject: hi\n", sender: "a@example.net", rcpts: "b@example.test",
			body: "body line\n", log: "milter changed the message: deleted header Subject #1"},
		{name: "change from",
			eom:    func(m *gomilter.Modifier) error { return m.ChangeFrom("<bounces@example.test>") },
			sender: "bounces@example.test", rcpts: "b@example.test", body: "body line\n",
			log: "milter changed the message: sender <a@example.net> changed to <bounces@example.test>"},
		{name: "add and delete recipients",
			eom: func(m *gomilter.Modifier) error {
				if err := m.DeleteRecipient("<b@example.test>"); err != nil {
					return err
				}
				return m.AddRecipient("<archive@example.test>")
			},
			sender: "a@example.net", rcpts: "archive@example.test", body: "body line\n",
			log: "milter changed the message: removed recipient <b@example.test>; added recipient <archive@example.test>"},
		{name: "replace body",
			eom:    func(m *gomilter.Modifier) error { return m.ReplaceBody([]byte("new\r\nbody\r\n")) },
			sender: "a@example.net", rcpts: "b@example.test", body: "new\nbody\n",
			log: "milter changed the message: replaced the body (9 bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeMilter{eom: func(m *gomilter.Modifier) (gomilter.Response, error) {
				if err := tt.eom(m); err != nil {
					return nil, err
				}
				return gomilter.RespAccept, nil
			}}
			ts := newTestServer(t, withMilter(startMilter(t, f), "tempfail"))
			c := dial(t, ts.addr(0))
			c.greet()
			c.expect("EHLO client.example", "250")
			if got := c.sendMessage("a@example.net", []string{"b@example.test"}, milterMsg); !strings.HasPrefix(got, "250 ") {
				t.Fatalf("DATA -> %q, want 250", got)
			}
			c.expect("QUIT", "221")
			ids := ts.queued()
			if len(ids) != 1 {
				t.Fatalf("queued %v, want one message", ids)
			}
			env, err := ts.spool.Load(ids[0])
			if err != nil {
				t.Fatal(err)
			}
			// The milter reads the body alone, as on the wire: a signature
			// or a scan of anything else would be of another message.
			if got := f.bodySeen(); got != "body line\r\n" {
				t.Errorf("milter got the body %q, want %q", got, "body line\r\n")
			}
			if env.Sender != tt.sender || strings.Join(env.Recipients, ",") != tt.rcpts {
				t.Errorf("envelope F=<%s> rcpts %v, want F=<%s> %s", env.Sender, env.Recipients, tt.sender, tt.rcpts)
			}
			msg := ts.message(ids[0])
			head, body, _ := strings.Cut(msg, "\n\n")
			if body != tt.body {
				t.Errorf("body = %q, want %q", body, tt.body)
			}
			if tt.wantHdr != "" && !strings.Contains(head+"\n", tt.wantHdr) {
				t.Errorf("headers lack %q:\n%s", tt.wantHdr, head)
			}
			if tt.wantNoHdr != "" && strings.Contains(head+"\n", tt.wantNoHdr) {
				t.Errorf("headers still hold %q:\n%s", tt.wantNoHdr, head)
			}
			if main := ts.logFile("mainlog"); !strings.Contains(main, string(ids[0])+" "+tt.log) {
				t.Errorf("mainlog lacks %q:\n%s", string(ids[0])+" "+tt.log, main)
			}
		})
	}
}

// TestMilterHangs: a milter that never answers costs each message no
// more than its timeouts, and on_error decides the message.
func TestMilterHangs(t *testing.T) {
	tests := []struct{ onError, mail, data string }{
		{"tempfail", "451 4.7.1 ", ""},
		{"reject", "550 5.7.1 ", ""},
		{"accept", "250 ", "250 "},
	}
	for _, tt := range tests {
		t.Run(tt.onError, func(t *testing.T) {
			ts := newTestServer(t, withMilter(hangingMilter(t), tt.onError))
			c := dial(t, ts.addr(0))
			c.greet()
			c.expect("EHLO client.example", "250")
			c.expect("MAIL FROM:<a@example.net>", tt.mail)
			if tt.data != "" {
				c.expect("RCPT TO:<b@example.test>", "250 ")
				c.expect("DATA", "354 ")
				c.send(wire(milterMsg))
				if got := c.reply(); !strings.HasPrefix(got, tt.data) {
					t.Errorf("DATA -> %q, want %q", got, tt.data)
				}
			}
			c.expect("QUIT", "221")
		})
	}
}
