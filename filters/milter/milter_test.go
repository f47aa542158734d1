package milter

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	"net/textproto"

	"mxgate/spool"
)

// fake is an in-process milter built on go-milter's server side; eom runs
// at end of message.
type fake struct {
	gomilter.NoOpMilter
	mu    *sync.Mutex
	seen  *[]string
	conn  gomilter.Response
	mail  gomilter.Response
	rcpt  gomilter.Response
	chunk func() (gomilter.Response, error)
	eom   func(m *gomilter.Modifier) (gomilter.Response, error)
}

func (f *fake) note(s string) { f.mu.Lock(); *f.seen = append(*f.seen, s); f.mu.Unlock() }

func (f *fake) Connect(host, family string, port uint16, addr net.IP, m *gomilter.Modifier) (gomilter.Response, error) {
	f.note("connect " + host + " " + addr.String() + " j=" + m.Macros["j"])
	if f.conn != nil {
		return f.conn, nil
	}
	return gomilter.RespContinue, nil
}
func (f *fake) MailFrom(from string, m *gomilter.Modifier) (gomilter.Response, error) {
	f.note("mail " + from + " {mail_addr}=" + m.Macros["{mail_addr}"] + " {auth_authen}=" + m.Macros["{auth_authen}"])
	if f.mail != nil {
		return f.mail, nil
	}
	return gomilter.RespContinue, nil
}
func (f *fake) RcptTo(rcpt string, m *gomilter.Modifier) (gomilter.Response, error) {
	f.note("rcpt " + rcpt)
	if f.rcpt != nil && rcpt == "bad@example.net" {
		return f.rcpt, nil
	}
	return gomilter.RespContinue, nil
}
func (f *fake) Headers(h textproto.MIMEHeader, m *gomilter.Modifier) (gomilter.Response, error) {
	f.note("subject " + h.Get("Subject"))
	return gomilter.RespContinue, nil
}
func (f *fake) BodyChunk(c []byte, m *gomilter.Modifier) (gomilter.Response, error) {
	f.note("body " + strings.ReplaceAll(string(c), "\r\n", "|"))
	if f.chunk != nil {
		return f.chunk()
	}
	return gomilter.RespContinue, nil
}
func (f *fake) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	f.note("eom i=" + m.Macros["i"])
	if f.eom != nil {
		return f.eom(m)
	}
	return gomilter.RespAccept, nil
}

// serve starts f on a loopback port; it stops with the test.
func serve(t testing.TB, proto gomilter.OptProtocol, mk func() *fake) (addr string, seen func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var log []string
	srv := &gomilter.Server{
		NewMilter: func() gomilter.Milter { f := mk(); f.mu, f.seen = &mu, &log; return f },
		Actions:   offerActions,
		Protocol:  proto,
	}
	go srv.Serve(v6Listener{ln})
	t.Cleanup(func() { srv.Close() })
	return "inet:" + ln.Addr().String(), func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), log...) }
}

var testHeaders = []spool.Header{
	{Type: 'P', Text: "Received: from client\n\tby mx.example.net\n"},
	{Type: 'F', Text: "From: a@example.test\n"},
	{Type: ' ', Text: "Subject: hello\n"},
	{Type: '*', Text: "X-Spam-Flag: YES\n"},
}

// testOptions are the Options config makes of a [[milter]] with address
// addr and name, every other key at its default.
func testOptions(addr, name string) Options {
	return Options{Address: addr, Name: name, OnError: "tempfail",
		ConnectTimeout: 10 * time.Second, CommandTimeout: 30 * time.Second, EOMTimeout: 120 * time.Second}
}

// newTestSession starts a session of a host of opts; the lines it logs
// are kept as the mainlog writes them, "ID text" or "text".
func newTestSession(t testing.TB, opts ...Options) (*Session, *[]string) {
	t.Helper()
	var logs []string
	h, err := NewHost(opts, func(id, text string) {
		if id != "" {
			text = id + " " + text
		}
		logs = append(logs, text)
	})
	if err != nil {
		t.Fatal(err)
	}
	s := h.NewSession(context.Background(), ConnInfo{Hostname: "mx.example.net", DaemonName: "mxgate",
		ClientIP: netip.MustParseAddr("192.0.2.1"), ClientPort: 4321})
	t.Cleanup(s.Close)
	return s, &logs
}

// transaction runs one message through s and returns every decision.
func transaction(s *Session, body string) (helo, mail, rcpt, bad, data Decision, mods Modifications) {
	ctx := context.Background()
	helo = s.Helo(ctx, "client.example")
	mail = s.Mail(ctx, "a@example.test", "alice", "PLAIN")
	rcpt = s.Rcpt(ctx, "b@example.net")
	bad = s.Rcpt(ctx, "bad@example.net")
	data, mods = s.Data(ctx, "1abcde-000001-AB", testHeaders, strings.NewReader(body))
	return
}

func TestReplies(t *testing.T) {
	reply := gomilter.NewResponseStr('y', "554 5.7.0 Go away")
	tests := []struct {
		name            string
		f               fake
		mail, bad, data string
	}{
		{"continue", fake{}, "continue", "continue", "continue"},
		{"reject at MAIL", fake{mail: gomilter.RespReject}, "reject 550 5.7.1 Command rejected", "continue", "continue"},
		{"tempfail at MAIL", fake{mail: gomilter.RespTempFail}, "tempfail 451 4.7.1 Service unavailable - try again later", "continue", "continue"},
		{"reply code at RCPT", fake{rcpt: reply}, "continue", "reject 554 5.7.0 Go away", "continue"},
		{"reject at connect sticks", fake{conn: gomilter.RespReject}, "reject 550 5.7.1 Command rejected", "reject 550 5.7.1 Command rejected", "reject 550 5.7.1 Command rejected"},
		{"discard at MAIL", fake{mail: gomilter.RespDiscard}, "discard", "continue", "discard"},
		{"tempfail at EOM", fake{eom: func(*gomilter.Modifier) (gomilter.Response, error) { return gomilter.RespTempFail, nil }}, "continue", "continue", "tempfail 451 4.7.1 Service unavailable - try again later"},
		{"reply at EOM", fake{eom: func(*gomilter.Modifier) (gomilter.Response, error) {
			return gomilter.NewResponseStr('y', "450 4.2.0 Later"), nil
		}}, "continue", "continue", "tempfail 450 4.2.0 Later"},
		{"quarantine", fake{eom: func(m *gomilter.Modifier) (gomilter.Response, error) {
			return gomilter.RespAccept, m.Quarantine("looks bad")
		}}, "continue", "continue", "quarantine looks bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := serve(t, 0, func() *fake { f := tt.f; return &f })
			s, _ := newTestSession(t, testOptions(addr, "fake"))
			_, mail, _, bad, data, _ := transaction(s, "hi\n")
			for _, c := range []struct{ what, got, want string }{
				{"MAIL", show(mail), tt.mail}, {"RCPT bad", show(bad), tt.bad}, {"DATA", show(data), tt.data},
			} {
				if c.got != c.want {
					t.Errorf("%s: got %q, want %q", c.what, c.got, c.want)
				}
			}
		})
	}
}

func show(d Decision) string {
	switch d.Action {
	case Reject, Tempfail:
		return d.Action.String() + " " + d.Reply()
	case Quarantine:
		return "quarantine " + d.Reason
	}
	return d.Action.String()
}

func TestEventsAndMacros(t *testing.T) {
	addr, seen := serve(t, 0, func() *fake { return &fake{} })
	s, _ := newTestSession(t, testOptions(addr, addr))
	body := strings.Repeat("x", 70000) + "\nlast line\n"
	transaction(s, body)
	s.Close()
	got := seen()
	want := []string{
		"connect [192.0.2.1] 192.0.2.1 j=mx.example.net",
		"mail a@example.test {mail_addr}=a@example.test {auth_authen}=alice",
		"rcpt b@example.net", "rcpt bad@example.net",
		"subject hello",
	}
	if len(got) < len(want)+3 {
		t.Fatalf("milter saw %d events: %q", len(got), got)
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("event %d: got %q, want %q", i, got[i], w)
		}
	}
	// The body arrives in CRLF, in chunks of at most 64 KiB, complete.
	var all strings.Builder
	for _, e := range got[len(want) : len(got)-1] {
		c := strings.TrimPrefix(e, "body ")
		if len(c) > gomilter.MaxBodyChunk {
			t.Errorf("chunk of %d bytes", len(c))
		}
		all.WriteString(c)
	}
	if want := strings.ReplaceAll(body, "\n", "|"); all.String() != want {
		t.Errorf("body: got %d bytes, want %d", all.Len(), len(want))
	}
	if last := got[len(got)-1]; last != "eom i=1abcde-000001-AB" {
		t.Errorf("last event %q", last)
	}
}

func TestModifications(t *testing.T) {
	addr, _ := serve(t, 0, func() *fake {
		return &fake{eom: func(m *gomilter.Modifier) (gomilter.Response, error) {
			for _, err := range []error{
				m.AddHeader("X-Added", "one\r\n\ttwo"),
				m.InsertHeader(0, "DKIM-Signature", "v=1"),
				m.ChangeHeader(1, "Subject", "[SPAM] hello"),
				m.ChangeHeader(1, "Received", ""),
				m.AddRecipient("new@example.net"),
				m.DeleteRecipient("b@example.net"),
				m.ChangeFrom("<bounce@example.test>"),
				m.ReplaceBody([]byte("new\r\nbody\r\n")),
			} {
				if err != nil {
					return nil, err
				}
			}
			return gomilter.RespAccept, nil
		}}
	})
	s, logs := newTestSession(t, testOptions(addr, "edit"))
	_, _, _, _, d, mods := transaction(s, "old\n")
	if d.Action != Continue {
		t.Fatalf("decision %+v", d)
	}
	var got []string
	for _, h := range mods.ApplyHeaders(testHeaders) {
		got = append(got, string(h.Type)+h.Text)
	}
	want := []string{
		"IDKIM-Signature: v=1\n"[1:],
		"*Received: from client\n\tby mx.example.net\n",
		"FFrom: a@example.test\n",
		" Subject: [SPAM] hello\n",
		"*X-Spam-Flag: YES\n",
		" X-Added: one\n\ttwo\n",
	}
	want[0] = " DKIM-Signature: v=1\n"
	if strings.Join(got, "") != strings.Join(want, "") {
		t.Errorf("headers:\n%q\nwant\n%q", got, want)
	}
	body, _ := io.ReadAll(mods.ReplaceBody)
	if string(body) != "new\nbody\n" || mods.ChangeFrom != "bounce@example.test" ||
		strings.Join(mods.AddRcpts, ",") != "new@example.net" || strings.Join(mods.DelRcpts, ",") != "b@example.net" {
		t.Errorf("body %q from %q add %q del %q", body, mods.ChangeFrom, mods.AddRcpts, mods.DelRcpts)
	}
	wantLog := "1abcde-000001-AB milter edit: insert header at 0 DKIM-Signature: v=1"
	if !strings.Contains(strings.Join(*logs, "\n"), wantLog) {
		t.Errorf("log lacks %q:\n%s", wantLog, strings.Join(*logs, "\n"))
	}
}

// TestFaults: a milter failure becomes the on_error decision within the
// timeouts; the test would hang (and time out) if it did not.
func TestFaults(t *testing.T) {
	hang := func() (gomilter.Response, error) { time.Sleep(time.Minute); return gomilter.RespContinue, nil }
	drop := func() (gomilter.Response, error) { return nil, io.ErrUnexpectedEOF } // go-milter's server closes the connection
	unknown := func() (gomilter.Response, error) { return gomilter.NewResponse('Z', nil), nil }
	refused, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := "inet:" + refused.Addr().String()
	refused.Close()
	tests := []struct {
		name, onError string
		chunk         func() (gomilter.Response, error)
		addr          string
		want          string
	}{
		{"hang tempfail", "tempfail", hang, "", "tempfail 451 4.7.1 Service unavailable - try again later"},
		{"drop reject", "reject", drop, "", "reject 550 5.7.1 Command rejected"},
		{"unknown code accept", "accept", unknown, "", "continue"},
		{"unknown code tempfail", "tempfail", unknown, "", "tempfail 451 4.7.1 Service unavailable - try again later"},
		{"refused", "tempfail", nil, deadAddr, "tempfail 451 4.7.1 Service unavailable - try again later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.addr
			if addr == "" {
				addr, _ = serve(t, 0, func() *fake { return &fake{chunk: tt.chunk} })
			}
			o := testOptions(addr, "bad")
			o.OnError, o.CommandTimeout, o.EOMTimeout = tt.onError, 200*time.Millisecond, 300*time.Millisecond
			s, logs := newTestSession(t, o)
			_, _, _, _, d, mods := transaction(s, "body\n")
			if show(d) != tt.want || !mods.Empty() {
				t.Errorf("got %q (mods %+v), want %q", show(d), mods, tt.want)
			}
			if !strings.Contains(strings.Join(*logs, "\n"), "milter bad ("+addr+") failed at") {
				t.Errorf("no failure logged: %q", *logs)
			}
		})
	}
}

func TestNewHostErrors(t *testing.T) {
	for _, o := range []Options{{Address: "tcp:1.2.3.4:5"}, {Address: "1.2.3.4:5"}} {
		if _, err := NewHost([]Options{o}, nil); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// v6Listener makes go-milter's server answer option negotiation with
// version 6: v0.5.0's server says 2 while handling v6 masks, and mxgate's
// client rightly refuses v6 actions from a v2 milter.
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
