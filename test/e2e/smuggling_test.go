package e2e

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// smuggled is what an attacker hides after a fake end of data: a second
// transaction that a server reading the fake end as the real one would run.
const smuggled = "MAIL FROM:<evil@sender.test>\r\n" +
	"RCPT TO:<smuggled@example.test>\r\n" +
	"DATA\r\n" +
	"Subject: smuggled\r\n" +
	"\r\n" +
	"smuggled body"

// TestSmugglingBattery sends, for each end-of-data look-alike some MTAs
// accept, a message whose body holds that look-alike followed by a smuggled
// transaction, then the real CRLF.CRLF. mxgate (bare_newline = "reject")
// must refuse the whole message with 550 5.5.2, and the smuggled recipient
// must never reach smtp-sink; a clean message proves the path works.
func TestSmugglingBattery(t *testing.T) {
	t.Parallel()
	s := startSink(t)
	g := startMxgate(t, s.URL())

	for _, fake := range []string{"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r"} {
		t.Run(strconv.Quote(fake), func(t *testing.T) {
			c := mustDial(t, "127.0.0.1", g.addr)
			c.expect(t, "EHLO client.test", 250)
			c.expect(t, "MAIL FROM:<alice@sender.test>", 250)
			c.expect(t, "RCPT TO:<user@example.test>", 250)
			c.expect(t, "DATA", 354)
			data := "Subject: first\r\n\r\nfirst body" + fake + smuggled + "\r\n.\r\n"
			if err := c.write([]byte(data)); err != nil {
				t.Fatal(err)
			}
			r, err := c.read()
			if err != nil {
				t.Fatalf("sent %q: %v", data, err)
			}
			if r.Code != 550 || !strings.HasPrefix(r.Text(), "5.5.2") {
				t.Errorf("sent %q: reply %v, want 550 5.5.2", data, r)
			}
			// Replies to smuggled commands would queue up behind the one
			// to the real end of data: after QUIT only its 221 may come.
			if err := c.write([]byte("QUIT\r\n")); err != nil {
				return // the server hung up after the refusal: nothing more ran
			}
			for {
				r, err := c.read()
				if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
					break
				}
				if err != nil {
					t.Fatalf("after QUIT: %v", err)
				}
				if r.Code != 221 {
					t.Errorf("sent %q: after the refusal and QUIT got %v, want only 221", data, r)
				}
			}
		})
	}

	c := mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO client.test", 250)
	id := c.send(t, "alice@sender.test", []string{"user@example.test"}, dataBytes(readTestdata(t, "message.eml")))
	c.expect(t, "QUIT", 221)
	g.waitCompleted(id)
	g.waitSpoolEmpty()

	msgs := s.messages(t)
	if len(msgs) != 1 {
		t.Errorf("smtp-sink received %d messages, want exactly the 1 clean one", len(msgs))
	}
	for _, m := range msgs {
		if strings.Contains(m.raw, "smuggled") {
			t.Errorf("%s: smtp-sink received smuggled content (recipients %v)", m.path, m.rcpts)
		}
	}
	g.stop()
}
