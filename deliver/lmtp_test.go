package deliver

import (
	"context"
	"net"
	"net/textproto"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestLMTPPerRecipientReplies(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			be := &fakeBackend{
				rcptErr: map[string]error{"unknown@example.test": smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "User unknown")},
				lmtpStatus: map[string]error{
					"gone@example.test": smtpErr(550, smtp.EnhancedCode{5, 2, 1}, "Mailbox disabled"),
					"full@example.test": smtpErr(452, smtp.EnhancedCode{4, 2, 2}, "Quota exceeded"),
				},
			}
			u, wire := startServer(t, network, be, func(s *smtp.Server) { s.LMTP = true })
			tr := newTransport(t, u, testOptions())
			if tr.Name() != "lmtp" {
				t.Errorf("Name() = %q, want lmtp", tr.Name())
			}
			h := host
			if network == "unix" {
				h = strings.TrimPrefix(u, "lmtp+unix://")
			}
			rcpts := []string{"ok@example.test", "gone@example.test", "unknown@example.test", "full@example.test", "ok@example.test"}
			got := tr.Deliver(context.Background(), msg("s@example.test", "Subject: x\n\nhi\n", rcpts...))
			checkResults(t, got, []Result{
				{Rcpt: "ok@example.test", Status: Delivered, Host: h, Reply: "250 2.0.0 <ok@example.test> OK: queued"},
				{Rcpt: "gone@example.test", Status: Failed, Host: h, Reply: "550 5.2.1 <gone@example.test> Mailbox disabled",
					Err: "LMTP error from remote mail server after end of data: 550 5.2.1 <gone@example.test> Mailbox disabled"},
				{Rcpt: "unknown@example.test", Status: Failed, Host: h, Reply: "550 5.1.1 User unknown",
					Err: "LMTP error from remote mail server after RCPT TO:<unknown@example.test>: 550 5.1.1 User unknown"},
				{Rcpt: "full@example.test", Status: Deferred, Host: h, Reply: "452 4.2.2 <full@example.test> Quota exceeded",
					Err: "LMTP error from remote mail server after end of data: 452 4.2.2 <full@example.test> Quota exceeded"},
				{Rcpt: "ok@example.test", Status: Delivered, Host: h, Reply: "250 2.0.0 <ok@example.test> OK: queued"},
			})
			w := wire.String()
			if !strings.HasPrefix(w, "LHLO mx.example.net\r\n") {
				t.Errorf("session does not start with LHLO: %q", w)
			}
			if n := strings.Count(w, "RCPT TO:<ok@example.test>"); n != 1 {
				t.Errorf("duplicate recipient sent %d times, want once:\n%s", n, w)
			}
		})
	}
}

// When the connection breaks between per-recipient replies, the recipients
// that got a reply keep it and the others are deferred.
func TestLMTPConnectionLostBetweenReplies(t *testing.T) {
	u := startScripted(t, func(c net.Conn, tp *textproto.Conn, done <-chan struct{}) {
		tp.PrintfLine("220 scripted.test LMTP")
		for {
			line, err := tp.ReadLine()
			if err != nil {
				return
			}
			switch strings.SplitN(line, " ", 2)[0] {
			case "LHLO":
				tp.PrintfLine("250-scripted.test\r\n250 PIPELINING")
			case "DATA":
				tp.PrintfLine("354 go ahead")
				tp.ReadDotBytes()
				tp.PrintfLine("250 2.0.0 <a@example.test> Saved")
				tp.PrintfLine("550 5.1.1 <b@example.test> Gone")
				c.Close()
				return
			default:
				tp.PrintfLine("250 2.0.0 ok")
			}
		}
	})
	u = "lmtp" + strings.TrimPrefix(u, "smtp")
	got := newTransport(t, u, testOptions()).Deliver(context.Background(),
		msg("", "x\n", "a@example.test", "b@example.test", "c@example.test"))
	checkResults(t, got, []Result{
		{Rcpt: "a@example.test", Status: Delivered, Host: host, Reply: "250 2.0.0 <a@example.test> Saved"},
		{Rcpt: "b@example.test", Status: Failed, Reason: RemotePerm, Host: host, Reply: "550 5.1.1 <b@example.test> Gone",
			Err: "LMTP error from remote mail server after end of data: 550 5.1.1 <b@example.test> Gone"},
		{Rcpt: "c@example.test", Status: Deferred, Reason: ConnectionLost, Host: host, Err: "Remote host closed connection in response to end of data"},
	})
}
