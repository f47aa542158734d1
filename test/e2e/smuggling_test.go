package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"mxgate/internal/peertest"
	"mxgate/internal/tlstest"
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
// must never reach smtp-sink; a clean message proves the path works. The
// battery runs on plain SMTP, after STARTTLS and on the implicit-TLS
// listener: the guard is in the DATA reader, not in a scan of plaintext.
func TestSmugglingBattery(t *testing.T) {
	t.Parallel()
	s := startSink(t)
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
	g := startMxgateConfig(t, tlsConfig(t, tlsAddr), s.URL())

	transports := []struct {
		name string
		dial func(t *testing.T) *client // greeted, EHLO said
	}{
		{"plain", func(t *testing.T) *client {
			c := mustDial(t, "127.0.0.1", g.addr)
			c.expect(t, "EHLO client.test", 250)
			return c
		}},
		{"starttls", func(t *testing.T) *client {
			c := mustDial(t, "127.0.0.1", g.addr)
			c.expect(t, "EHLO client.test", 250)
			c.expect(t, "STARTTLS", 220)
			tc := tls.Client(c.conn, tlsClientConfig())
			if err := tc.Handshake(); err != nil {
				t.Fatalf("STARTTLS handshake: %v", err)
			}
			c = &client{conn: tc, r: bufio.NewReader(tc)}
			c.expect(t, "EHLO client.test", 250)
			return c
		}},
		{"implicit-tls", func(t *testing.T) *client {
			d := &net.Dialer{Timeout: 5 * time.Second}
			tc, err := tls.DialWithDialer(d, "tcp", tlsAddr, tlsClientConfig())
			if err != nil {
				t.Fatalf("connect %s: %v", tlsAddr, err)
			}
			t.Cleanup(func() { tc.Close() })
			c := &client{conn: tc, r: bufio.NewReader(tc)}
			if r, err := c.read(); err != nil || r.Code != 220 {
				t.Fatalf("greeting on %s: %v %v, want 220", tlsAddr, r, err)
			}
			c.expect(t, "EHLO client.test", 250)
			return c
		}},
	}

	for _, tr := range transports {
		for _, fake := range []string{"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r"} {
			t.Run(tr.name+"/"+strconv.Quote(fake), func(t *testing.T) {
				c := tr.dial(t)
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
	}

	var ids []string
	for _, tr := range transports {
		c := tr.dial(t)
		ids = append(ids, c.send(t, "alice@sender.test", []string{"user@example.test"}, dataBytes(readTestdata(t, "message.eml"))))
		c.expect(t, "QUIT", 221)
	}
	g.waitCompleted(ids...)
	g.waitSpoolEmpty()

	msgs := s.messages(t)
	if len(msgs) != len(transports) {
		t.Errorf("smtp-sink received %d messages, want exactly the %d clean ones", len(msgs), len(transports))
	}
	for _, m := range msgs {
		if strings.Contains(m.raw, "smuggled") {
			t.Errorf("%s: smtp-sink received smuggled content (recipients %v)", m.path, m.rcpts)
		}
	}
	g.stop()
}

// tlsConfig writes a config template: the e2e template with a [tls]
// section (a fresh self-signed certificate) and an implicit-TLS listener
// on tlsAddr; the plain listener offers STARTTLS.
func tlsConfig(t *testing.T, tlsAddr string) string {
	t.Helper()
	b, err := os.ReadFile(testdata("mxgate.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	const listen = `listen   = ["{{.Listen}}"]`
	if !strings.Contains(text, listen) {
		t.Fatalf("%s lacks %q", testdata("mxgate.toml.tmpl"), listen)
	}
	text = strings.Replace(text, listen, listen+"\nlisten_tls = [\""+tlsAddr+"\"]", 1)
	cert, key := tlstest.Files(t, "mx.example.test")
	text += fmt.Sprintf("\n[tls]\ncert = %q\nkey  = %q\n", cert, key)
	path := filepath.Join(t.TempDir(), "mxgate.toml.tmpl")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func tlsClientConfig() *tls.Config {
	return &tls.Config{ServerName: "mx.example.test", InsecureSkipVerify: true}
}
