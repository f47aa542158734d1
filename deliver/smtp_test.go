package deliver

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/textproto"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"mxgate/internal/tlstest"
)

const host = "127.0.0.1 [127.0.0.1]"

func smtpErr(code int, enh smtp.EnhancedCode, text string) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: text}
}

func TestSMTPReplies(t *testing.T) {
	const body = "Subject: hi\n\nhello\n"
	tests := []struct {
		name    string
		sender  string
		rcpts   []string
		be      *fakeBackend // nil: accept everything
		want    []Result
		wire    []string // substrings the client must have sent
		notWire []string // and must not have
		got     []string // envelope recipients the server accepted
	}{{
		name:   "all accepted",
		sender: "s@example.test",
		rcpts:  []string{"a@example.test", "b@example.test"},
		want: []Result{
			{Rcpt: "a@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 OK: queued"},
			{Rcpt: "b@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 OK: queued"},
		},
		wire: []string{"EHLO mx.example.net\r\n", "MAIL FROM:<s@example.test> BODY=8BITMIME SIZE=19\r\n", "RCPT TO:<a@example.test>\r\n", "QUIT\r\n"},
		got:  []string{"a@example.test", "b@example.test"},
	}, {
		name:   "mixed 5xx, 4xx and accepted recipients",
		sender: "s@example.test",
		rcpts:  []string{"gone@example.test", "full@example.test", "ok@example.test"},
		be: &fakeBackend{rcptErr: map[string]error{
			"gone@example.test": smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "No such user"),
			"full@example.test": smtpErr(452, smtp.EnhancedCode{4, 2, 2}, "Mailbox full"),
		}},
		want: []Result{
			{Rcpt: "gone@example.test", Status: Failed, Reason: RemotePerm, Host: host, Reply: "550 5.1.1 No such user",
				Err: "SMTP error from remote mail server after RCPT TO:<gone@example.test>: 550 5.1.1 No such user"},
			{Rcpt: "full@example.test", Status: Deferred, Reason: OverQuota, Host: host, Reply: "452 4.2.2 Mailbox full",
				Err: "SMTP error from remote mail server after RCPT TO:<full@example.test>: 452 4.2.2 Mailbox full"},
			{Rcpt: "ok@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 OK: queued"},
		},
		wire: []string{"DATA\r\n"},
		got:  []string{"ok@example.test"},
	}, {
		name:   "no recipient accepted: no DATA",
		sender: "s@example.test",
		rcpts:  []string{"gone@example.test"},
		be: &fakeBackend{rcptErr: map[string]error{
			"gone@example.test": smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "No such user"),
		}},
		want: []Result{{Rcpt: "gone@example.test", Status: Failed, Reason: RemotePerm, Host: host, Reply: "550 5.1.1 No such user",
			Err: "SMTP error from remote mail server after RCPT TO:<gone@example.test>: 550 5.1.1 No such user"}},
		wire:    []string{"QUIT\r\n"},
		notWire: []string{"DATA"},
	}, {
		name:   "sender refused",
		sender: "s@example.test",
		rcpts:  []string{"a@example.test", "b@example.test"},
		be:     &fakeBackend{mailErr: smtpErr(553, smtp.EnhancedCode{5, 7, 1}, "Sender not allowed")},
		want: []Result{
			{Rcpt: "a@example.test", Status: Failed, Reason: RemotePerm, Host: host, Reply: "553 5.7.1 Sender not allowed",
				Err: "SMTP error from remote mail server after MAIL FROM:<s@example.test>: 553 5.7.1 Sender not allowed"},
			{Rcpt: "b@example.test", Status: Failed, Reason: RemotePerm, Host: host, Reply: "553 5.7.1 Sender not allowed",
				Err: "SMTP error from remote mail server after MAIL FROM:<s@example.test>: 553 5.7.1 Sender not allowed"},
		},
		// The RCPTs went in MAIL's pipelined group; their 503s say
		// nothing of the recipients, and no DATA follows.
		notWire: []string{"DATA"},
	}, {
		name:  "final reply 5xx fails every accepted recipient",
		rcpts: []string{"a@example.test", "gone@example.test"},
		be: &fakeBackend{
			rcptErr: map[string]error{"gone@example.test": smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "No such user")},
			dataErr: smtpErr(554, smtp.EnhancedCode{5, 7, 1}, "Spam detected"),
		},
		want: []Result{
			{Rcpt: "a@example.test", Status: Failed, Reason: RemotePerm, Host: host, Reply: "554 5.7.1 Spam detected",
				Err: "SMTP error from remote mail server after end of data: 554 5.7.1 Spam detected"},
			{Rcpt: "gone@example.test", Status: Failed, Reason: RemotePerm, Host: host, Reply: "550 5.1.1 No such user",
				Err: "SMTP error from remote mail server after RCPT TO:<gone@example.test>: 550 5.1.1 No such user"},
		},
		wire: []string{"MAIL FROM:<> BODY=8BITMIME SIZE=19\r\n"},
	}, {
		name:  "final reply 4xx defers",
		rcpts: []string{"a@example.test"},
		be:    &fakeBackend{dataErr: smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Try again later")},
		want: []Result{{Rcpt: "a@example.test", Status: Deferred, Reason: RemoteTemp, Host: host, Reply: "451 4.3.0 Try again later",
			Err: "SMTP error from remote mail server after end of data: 451 4.3.0 Try again later"}},
	}, {
		name:  "final reply with queue id",
		rcpts: []string{"a@example.test"},
		be:    &fakeBackend{dataErr: smtpErr(250, smtp.EnhancedCode{2, 0, 0}, "Ok: queued as 4Xyz")},
		want:  []Result{{Rcpt: "a@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 Ok: queued as 4Xyz"}},
	}, {
		name:   "local parts that need quoting are quoted again",
		sender: `sen der@example.test`,
		rcpts:  []string{`john doe@example.test`, `"jane doe"@example.test`, `a"b@example.test`},
		want: []Result{
			{Rcpt: `john doe@example.test`, Status: Delivered, Host: host, Reply: "250 2.0.0 OK: queued"},
			{Rcpt: `"jane doe"@example.test`, Status: Delivered, Host: host, Reply: "250 2.0.0 OK: queued"},
			{Rcpt: `a"b@example.test`, Status: Delivered, Host: host, Reply: "250 2.0.0 OK: queued"},
		},
		wire: []string{"MAIL FROM:<\"sen der\"@example.test>", "RCPT TO:<\"john doe\"@example.test>\r\n",
			"RCPT TO:<\"jane doe\"@example.test>\r\n", "RCPT TO:<\"a\\\"b\"@example.test>\r\n"},
		got: []string{"john doe@example.test", "jane doe@example.test", `a"b@example.test`},
	}, {
		name:  "duplicate recipients are sent once and each gets a result",
		rcpts: []string{"a@example.test", "b@example.test", "a@example.test"},
		want: []Result{
			{Rcpt: "a@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 OK: queued"},
			{Rcpt: "b@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 OK: queued"},
			{Rcpt: "a@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 OK: queued"},
		},
		got: []string{"a@example.test", "b@example.test"},
	}, {
		name:  "a recipient with CR LF never reaches the wire",
		rcpts: []string{"a@example.test\r\nRSET", "b@example.test"},
		want: []Result{
			{Rcpt: "a@example.test\r\nRSET", Status: Failed, Err: `address "a@example.test\r\nRSET" contains control character 0x0d`},
			{Rcpt: "b@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 OK: queued"},
		},
		notWire: []string{"RSET"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := tt.be
			if be == nil {
				be = &fakeBackend{}
			}
			u, wire := startServer(t, "tcp", be, nil)
			tr := newTransport(t, u, testOptions())
			got := tr.Deliver(context.Background(), msg(tt.sender, body, tt.rcpts...))
			checkResults(t, got, tt.want)
			w := wire.String()
			for _, s := range tt.wire {
				if !strings.Contains(w, s) {
					t.Errorf("wire lacks %q:\n%s", s, w)
				}
			}
			for _, s := range tt.notWire {
				if strings.Contains(w, s) {
					t.Errorf("wire has %q:\n%s", s, w)
				}
			}
			if tt.got != nil {
				msgs := be.received()
				if len(msgs) != 1 || strings.Join(msgs[0].to, ",") != strings.Join(tt.got, ",") {
					t.Errorf("server received %+v, want one message to %v", msgs, tt.got)
				}
			}
		})
	}
}

func TestSMTPUTF8(t *testing.T) {
	const noUTF8 = "a non-ASCII address needs SMTPUTF8, which the remote host does not offer"
	tests := []struct {
		name    string
		offered bool
		sender  string
		want    []Result
		wire    string
	}{{
		name: "offered", offered: true, sender: "s@example.test",
		want: []Result{
			{Rcpt: "jörg@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 OK: queued"},
			{Rcpt: "a@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 OK: queued"},
		},
		wire: "MAIL FROM:<s@example.test> BODY=8BITMIME SIZE=3 SMTPUTF8\r\n",
	}, {
		name: "not offered: the recipient fails", sender: "s@example.test",
		want: []Result{
			{Rcpt: "jörg@example.test", Status: Failed, Reason: BadAddress, Host: host, Err: noUTF8},
			{Rcpt: "a@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 OK: queued"},
		},
		wire: "MAIL FROM:<s@example.test> BODY=8BITMIME SIZE=3\r\nRCPT TO:<a@example.test>\r\nDATA",
	}, {
		name: "not offered: the sender fails all", sender: "jörg@example.test",
		want: []Result{
			{Rcpt: "jörg@example.test", Status: Failed, Reason: BadAddress, Host: host, Err: "sender " + noUTF8},
			{Rcpt: "a@example.test", Status: Failed, Reason: BadAddress, Host: host, Err: "sender " + noUTF8},
		},
		wire: "EHLO mx.example.net\r\nQUIT\r\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, wire := startServer(t, "tcp", &fakeBackend{}, func(s *smtp.Server) { s.EnableSMTPUTF8 = tt.offered })
			got := newTransport(t, u, testOptions()).Deliver(context.Background(), msg(tt.sender, "x\n\n", "jörg@example.test", "a@example.test"))
			checkResults(t, got, tt.want)
			if !strings.Contains(wire.String(), tt.wire) {
				t.Errorf("wire lacks %q:\n%s", tt.wire, wire.String())
			}
		})
	}
}

// The body goes out with CRLF line endings, dot-stuffed, and no bare CR.
func TestSMTPBodyOnTheWire(t *testing.T) {
	eml, err := os.ReadFile("testdata/message.eml")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/message.wire")
	if err != nil {
		t.Fatal(err)
	}
	be := &fakeBackend{}
	u, wire := startServer(t, "tcp", be, nil)
	rs := newTransport(t, u, testOptions()).Deliver(context.Background(), msg("s@example.test", string(eml), "a@example.test"))
	if rs[0].Status != Delivered {
		t.Fatalf("%+v", rs[0])
	}
	if got := dataOnWire(t, wire.String()); got != string(want) {
		t.Errorf("body on the wire:\n got %q\nwant %q", got, want)
	}
	if strings.Count(wire.String(), "\r") != strings.Count(wire.String(), "\r\n") {
		t.Errorf("bare CR on the wire: %q", wire.String())
	}
}

func TestSMTPConnectionTrouble(t *testing.T) {
	const body = "Subject: hi\n\nhello\n"
	greetAndAccept := func(tp *textproto.Conn, upTo string) bool {
		tp.PrintfLine("220 scripted.test ESMTP")
		for {
			line, err := tp.ReadLine()
			if err != nil {
				return false
			}
			verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
			if verb == upTo {
				return true
			}
			switch verb {
			case "EHLO":
				tp.PrintfLine("250-scripted.test\r\n250 PIPELINING")
			case "DATA":
				tp.PrintfLine("354 go ahead")
			default:
				tp.PrintfLine("250 2.0.0 ok")
			}
		}
	}
	tests := []struct {
		name    string
		handle  scriptFunc
		body    io.Reader
		opts    func(*Options)
		wantErr string
		wantWhy Reason
	}{{
		name:    "server never answers",
		handle:  func(c net.Conn, tp *textproto.Conn, done <-chan struct{}) { io.Copy(io.Discard, c) },
		opts:    func(o *Options) { o.CommandTimeout = 200 * time.Millisecond },
		wantErr: "SMTP timeout after initial connection",
		wantWhy: Timeout,
	}, {
		name:    "server hangs up at connect",
		handle:  func(c net.Conn, tp *textproto.Conn, done <-chan struct{}) { c.Close() },
		wantErr: "Remote host closed connection in response to initial connection",
		wantWhy: ConnectionLost,
	}, {
		name: "server stalls after RCPT",
		handle: func(c net.Conn, tp *textproto.Conn, done <-chan struct{}) {
			if greetAndAccept(tp, "RCPT") {
				io.Copy(io.Discard, c)
			}
		},
		opts:    func(o *Options) { o.CommandTimeout = 200 * time.Millisecond },
		wantErr: "SMTP timeout after RCPT TO:<a@example.test>",
		wantWhy: Timeout,
	}, {
		name: "server closes in response to DATA",
		handle: func(c net.Conn, tp *textproto.Conn, done <-chan struct{}) {
			if greetAndAccept(tp, "DATA") {
				c.Close()
			}
		},
		wantErr: "Remote host closed connection in response to DATA",
		wantWhy: ConnectionLost,
	}, {
		name: "server closes after the final dot",
		handle: func(c net.Conn, tp *textproto.Conn, done <-chan struct{}) {
			if greetAndAccept(tp, "DATA") {
				tp.PrintfLine("354 go ahead")
				tp.ReadDotBytes()
				c.Close()
			}
		},
		wantErr: "Remote host closed connection in response to end of data",
		wantWhy: ConnectionLost,
	}, {
		name: "server stops reading the body",
		handle: func(c net.Conn, tp *textproto.Conn, done <-chan struct{}) {
			if greetAndAccept(tp, "DATA") {
				tp.PrintfLine("354 go ahead")
				// Read nothing more: the client's writes block once the
				// socket buffers are full.
				<-done
			}
		},
		body:    io.LimitReader(repeatLine("a line of body that repeats\n"), 256<<20),
		opts:    func(o *Options) { o.DataTimeout = 200 * time.Millisecond },
		wantErr: "SMTP timeout while sending the message body",
		wantWhy: Timeout,
	}, {
		name:    "server answers garbage",
		handle:  func(c net.Conn, tp *textproto.Conn, done <-chan struct{}) { tp.PrintfLine("hello there") },
		wantErr: `SMTP protocol failure in response to initial connection: short response: "hello there"`,
		wantWhy: ProtocolError,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := startScripted(t, tt.handle)
			o := testOptions()
			if tt.opts != nil {
				tt.opts(&o)
			}
			m := msg("s@example.test", body, "a@example.test", "b@example.test")
			if tt.body != nil {
				src := tt.body
				m.Open = func() (io.ReadCloser, error) { return io.NopCloser(src), nil }
			}
			got := newTransport(t, u, o).Deliver(context.Background(), m)
			checkResults(t, got, []Result{
				{Rcpt: "a@example.test", Status: Deferred, Reason: tt.wantWhy, Host: host, Err: tt.wantErr},
				{Rcpt: "b@example.test", Status: Deferred, Reason: tt.wantWhy, Host: host, Err: tt.wantErr},
			})
		})
	}
}

// repeatLine is an endless body, so a test need not hold a large one in
// memory.
type repeatLine string

func (r repeatLine) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], r)
	}
	return n, nil
}

// A downstream that drops the connection in the middle of the body leaves
// the message deferred, never failed.
func TestSMTPDropMidData(t *testing.T) {
	be := &fakeBackend{dropInData: true}
	u, _ := startServer(t, "tcp", be, nil)
	m := msg("s@example.test", "", "a@example.test")
	m.Open = func() (io.ReadCloser, error) {
		return io.NopCloser(io.LimitReader(repeatLine("x\n"), 8<<20)), nil
	}
	got := newTransport(t, u, testOptions()).Deliver(context.Background(), m)
	if got[0].Status != Deferred || !strings.HasPrefix(got[0].Err, "Remote host closed connection ") {
		t.Errorf("got %+v, want Deferred with Remote host closed connection", got[0])
	}
}

func TestSMTPConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	got := newTransport(t, "smtp://"+addr, testOptions()).Deliver(context.Background(), msg("", "x\n", "a@example.test"))
	checkResults(t, got, []Result{{Rcpt: "a@example.test", Status: Deferred, Reason: Refused, Host: host, Err: "Connection refused"}})
}

// Cancelling the context ends a delivery stuck on a silent server at once,
// whatever the timeouts say.
func TestSMTPContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u := startScripted(t, func(c net.Conn, tp *textproto.Conn, done <-chan struct{}) {
		cancel()
		io.Copy(io.Discard, c)
	})
	o := testOptions()
	o.CommandTimeout = time.Hour
	got := newTransport(t, u, o).Deliver(ctx, msg("", "x\n", "a@example.test"))
	checkResults(t, got, []Result{{Rcpt: "a@example.test", Status: Deferred, Reason: Abandoned, Host: host, Err: "delivery abandoned: context canceled"}})
}

func TestSMTPOpenError(t *testing.T) {
	be := &fakeBackend{}
	u, wire := startServer(t, "tcp", be, nil)
	m := msg("", "", "a@example.test")
	m.Open = func() (io.ReadCloser, error) {
		return nil, errors.New("open spool/input/Q/1tXyZa-000AbC-Qr-D: no such file")
	}
	got := newTransport(t, u, testOptions()).Deliver(context.Background(), m)
	checkResults(t, got, []Result{{Rcpt: "a@example.test", Status: Deferred, Reason: LocalError, Host: "127.0.0.1 [127.0.0.1]",
		Err: "error opening message: open spool/input/Q/1tXyZa-000AbC-Qr-D: no such file"}})
	if w := wire.String(); w != "" {
		t.Errorf("connected although the message could not be read: %q", w)
	}
}

// A read error in the middle of the spooled body aborts the transaction
// (no final dot) and is blamed on the spool, not the remote host.
func TestSMTPSourceReadError(t *testing.T) {
	be := &fakeBackend{}
	u, wire := startServer(t, "tcp", be, nil)
	m := msg("", "", "a@example.test")
	m.Open = func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(strings.NewReader("Subject: x\n\npartial"), errReader{errors.New("read spool: input/output error")})), nil
	}
	got := newTransport(t, u, testOptions()).Deliver(context.Background(), m)
	checkResults(t, got, []Result{{Rcpt: "a@example.test", Status: Deferred, Reason: LocalError, Host: host,
		Err: "error reading message: read spool: input/output error"}})
	if strings.Contains(wire.String(), "\r\n.\r\n") {
		t.Errorf("final dot sent for a broken message: %q", wire.String())
	}
	if len(be.received()) != 0 {
		t.Errorf("server took the broken message: %+v", be.received())
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestSTARTTLS(t *testing.T) {
	cert := tlstest.Certificate(t, "localhost", "127.0.0.1")
	withTLS := func(s *smtp.Server) { s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}} }
	var handshakes atomic.Int32
	failFirstHandshake := func(s *smtp.Server) {
		s.TLSConfig = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if handshakes.Add(1) == 1 {
				return nil, errors.New("no certificate today")
			}
			return &cert, nil
		}}
	}
	tests := []struct {
		name      string
		server    func(*smtp.Server)
		mode      string
		verify    bool
		wantTLS   bool
		wantErr   string // "" = delivered
		notWire   []string
		wantConns int
	}{
		{name: "opportunistic uses TLS when offered", server: withTLS, mode: "opportunistic", wantTLS: true},
		{name: "opportunistic stays in clear when not offered", mode: "opportunistic"},
		{name: "required uses TLS", server: withTLS, mode: "required", wantTLS: true},
		{name: "required defers when not offered", mode: "required",
			wantErr: "a TLS session is required, but the server did not offer TLS support", notWire: []string{"MAIL", "STARTTLS"}},
		{name: "none never tries", server: withTLS, mode: "none", notWire: []string{"STARTTLS"}},
		{name: "failed handshake: opportunistic retries in clear", server: failFirstHandshake, mode: "opportunistic"},
		{name: "failed verification defers, no clear-text retry", server: withTLS, mode: "opportunistic", verify: true,
			wantErr: "TLS session failure: tls: failed to verify certificate: x509: certificate signed by unknown authority", notWire: []string{"MAIL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := &fakeBackend{}
			u, wire := startServer(t, "tcp", be, tt.server)
			o := testOptions()
			o.StartTLS, o.TLSVerify = tt.mode, tt.verify
			got := newTransport(t, u, o).Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", "a@example.test"))
			want := Result{Rcpt: "a@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 OK: queued"}
			if tt.wantErr != "" {
				want = Result{Rcpt: "a@example.test", Status: Deferred, Host: host, Err: tt.wantErr}
			}
			checkResults(t, got, []Result{want})
			msgs := be.received()
			if tt.wantErr == "" {
				if len(msgs) != 1 || msgs[0].tls != tt.wantTLS || msgs[0].helo != "mx.example.net" {
					t.Errorf("server received %+v, want one message with tls=%v from mx.example.net", msgs, tt.wantTLS)
				}
			} else if len(msgs) != 0 {
				t.Errorf("server received %+v, want nothing", msgs)
			}
			for _, s := range tt.notWire {
				if strings.Contains(wire.String(), s) {
					t.Errorf("wire has %q:\n%s", s, wire.String())
				}
			}
		})
	}
}

// Clear text sent right after the STARTTLS reply must not be taken as if it
// came over TLS.
func TestSTARTTLSInjection(t *testing.T) {
	u := startScripted(t, func(c net.Conn, tp *textproto.Conn, done <-chan struct{}) {
		tp.PrintfLine("220 scripted.test ESMTP")
		tp.ReadLine()
		tp.PrintfLine("250-scripted.test\r\n250 STARTTLS")
		tp.ReadLine()
		io.WriteString(c, "220 2.0.0 go ahead\r\n250 injected\r\n")
		io.Copy(io.Discard, c)
	})
	o := testOptions()
	o.StartTLS = "required"
	o.CommandTimeout = time.Second
	got := newTransport(t, u, o).Deliver(context.Background(), msg("", "x\n", "a@example.test"))
	if got[0].Status != Deferred || !strings.HasPrefix(got[0].Err, "TLS session failure: ") {
		t.Errorf("got %+v, want a TLS session failure", got[0])
	}
}

func TestSTARTTLSRefused(t *testing.T) {
	for _, mode := range []string{"opportunistic", "required"} {
		t.Run(mode, func(t *testing.T) {
			var mails atomic.Int32
			u := startScripted(t, func(c net.Conn, tp *textproto.Conn, done <-chan struct{}) {
				tp.PrintfLine("220 scripted.test ESMTP")
				for {
					line, err := tp.ReadLine()
					if err != nil {
						return
					}
					switch strings.SplitN(line, " ", 2)[0] {
					case "EHLO":
						tp.PrintfLine("250-scripted.test\r\n250 STARTTLS")
					case "STARTTLS":
						tp.PrintfLine("454 4.7.0 TLS not available due to temporary reason")
					case "DATA":
						tp.PrintfLine("354 go ahead")
						tp.ReadDotBytes()
						tp.PrintfLine("250 2.0.0 queued in clear")
					case "MAIL":
						mails.Add(1)
						tp.PrintfLine("250 2.1.0 ok")
					case "QUIT":
						tp.PrintfLine("221 2.0.0 bye")
						return
					default:
						tp.PrintfLine("250 2.0.0 ok")
					}
				}
			})
			o := testOptions()
			o.StartTLS = mode
			got := newTransport(t, u, o).Deliver(context.Background(), msg("", "x\n", "a@example.test"))
			want := Result{Rcpt: "a@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 queued in clear"}
			if mode == "required" {
				want = Result{Rcpt: "a@example.test", Status: Deferred, Reason: TLSRequired, Host: host, Reply: "454 4.7.0 TLS not available due to temporary reason",
					Err: "a TLS session is required, but STARTTLS was refused: 454 4.7.0 TLS not available due to temporary reason"}
			}
			checkResults(t, got, []Result{want})
			if mode == "required" && mails.Load() != 0 {
				t.Errorf("MAIL sent in clear although TLS is required")
			}
		})
	}
}
