package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// scripted is a downstream SMTP server on 127.0.0.1 that answers RCPT by
// the recipient's local part, so one test can make mxgate deliver, defer
// and fail on purpose: "defer..." gets 451 4.3.0 and "fail..." gets
// 550 5.1.1 while it is strict; everything else gets 250. It keeps every
// message it accepted. smtp-sink cannot do this: its -f and -r options
// refuse every RCPT alike.
type scripted struct {
	addr string
	srv  *smtp.Server

	mu      sync.Mutex
	lenient bool // accept "defer..." too: the downstream recovered
	got     []scriptedMessage
}

// scriptedMessage is one message the scripted downstream accepted.
type scriptedMessage struct {
	from  string
	rcpts []string
	data  string
}

// Replies of the scripted downstream, as mxgate logs them.
const (
	deferReply = "451 4.3.0 Mailbox busy, try later"
	failReply  = "550 5.1.1 No such user here"
)

// startScripted listens on a free loopback port; the server is closed when
// the test ends.
func startScripted(t *testing.T) *scripted {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("scripted downstream: %v", err)
	}
	s := &scripted{addr: l.Addr().String()}
	s.srv = smtp.NewServer(s)
	s.srv.Domain = "downstream.example.test"
	s.srv.ReadTimeout = replyTimeout
	s.srv.WriteTimeout = replyTimeout
	done := make(chan error, 1)
	go func() { done <- s.srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.srv.Close()
		}
		if err := <-done; err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			t.Errorf("scripted downstream on %s: %v", s.addr, err)
		}
	})
	return s
}

// URL is the downstream URL that sends mail to this server.
func (s *scripted) URL() string { return "smtp://" + s.addr }

// recover makes the server accept "defer..." recipients from now on.
func (s *scripted) recover() {
	s.mu.Lock()
	s.lenient = true
	s.mu.Unlock()
}

// messages returns what the server accepted so far.
func (s *scripted) messages() []scriptedMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]scriptedMessage(nil), s.got...)
}

// NewSession implements smtp.Backend.
func (s *scripted) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &scriptedSession{srv: s}, nil
}

type scriptedSession struct {
	srv *scripted
	msg scriptedMessage
}

func (ss *scriptedSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.msg = scriptedMessage{from: from}
	return nil
}

func (ss *scriptedSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	local, _, _ := strings.Cut(to, "@")
	ss.srv.mu.Lock()
	lenient := ss.srv.lenient
	ss.srv.mu.Unlock()
	switch {
	case strings.HasPrefix(local, "defer") && !lenient:
		return replyError(deferReply)
	case strings.HasPrefix(local, "fail"):
		return replyError(failReply)
	}
	ss.msg.rcpts = append(ss.msg.rcpts, to)
	return nil
}

func (ss *scriptedSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.msg.data = string(b)
	ss.srv.mu.Lock()
	ss.srv.got = append(ss.srv.got, ss.msg)
	ss.srv.mu.Unlock()
	return nil
}

func (ss *scriptedSession) Reset()        { ss.msg = scriptedMessage{} }
func (ss *scriptedSession) Logout() error { return nil }

// replyError turns "451 4.3.0 text" into the error go-smtp answers with.
func replyError(reply string) *smtp.SMTPError {
	var code, c1, c2, c3 int
	var text string
	if n, _ := fmt.Sscanf(reply, "%d %d.%d.%d", &code, &c1, &c2, &c3); n != 4 {
		panic("malformed scripted reply " + reply)
	}
	text = strings.SplitN(reply, " ", 3)[2]
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{c1, c2, c3}, Message: text}
}
