package peertest

import (
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStartPostfix relays one message through the private Postfix to a
// real smtp-sink and finds it there; an extra main.cf line is taken.
func TestStartPostfix(t *testing.T) {
	sinkDir := t.TempDir()
	sink := Start(t, "smtp-sink", sinkDir, 0)
	pf := StartPostfix(t, sink, "smtpd_banner = $myhostname ESMTP peertest\n")

	c, err := smtp.Dial(pf.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("u@example.test"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: peertest postfix\r\n\r\nbody\r\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()

	deadline := time.Now().Add(20 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(sinkDir, "msg.*"))
		if len(files) == 1 {
			b, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "Subject: peertest postfix") {
				t.Errorf("%s does not hold the message sent:\n%s", files[0], b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sink has %d messages 20s after Postfix took one; its log:\n%s", len(files), pf.Maillog(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if log := pf.Maillog(t); !strings.Contains(log, "status=sent") {
		t.Errorf("no status=sent in Postfix's log:\n%s", log)
	}
}
