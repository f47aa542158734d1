package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// replyTimeout bounds every wait for a server reply.
const replyTimeout = 15 * time.Second

// reply is one SMTP reply: its code and the text of every line.
type reply struct {
	Code  int
	Lines []string
}

func (r reply) String() string {
	var b strings.Builder
	for i, l := range r.Lines {
		sep := "-"
		if i == len(r.Lines)-1 {
			sep = " "
		}
		fmt.Fprintf(&b, "%d%s%s", r.Code, sep, l)
		if i < len(r.Lines)-1 {
			b.WriteString(" | ")
		}
	}
	return b.String()
}

// Text is the reply's lines joined by newlines, without the codes.
func (r reply) Text() string { return strings.Join(r.Lines, "\n") }

// idRE finds the message ID in mxgate's "250 2.0.0 OK id=ID".
var idRE = regexp.MustCompile(`\bid=([0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2})\b`)

// ID is the message ID of a 250 reply to DATA, "" when it names none.
func (r reply) ID() string {
	m := idRE.FindStringSubmatch(r.Text())
	if m == nil {
		return ""
	}
	return m[1]
}

// client is a minimal SMTP client that writes exactly the bytes a test
// gives it: nothing is normalised, so tests can send what real clients get
// wrong (bare LF, bare CR, stray dots).
type client struct {
	conn net.Conn
	r    *bufio.Reader
}

// dial connects from local (an IP of the loopback net: "127.0.0.1",
// "127.0.0.2") to addr and reads the greeting.
func dial(local, addr string) (*client, reply, error) {
	d := net.Dialer{
		Timeout:   5 * time.Second,
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)},
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, reply{}, err
	}
	c := &client{conn: conn, r: bufio.NewReader(conn)}
	greeting, err := c.read()
	if err != nil {
		conn.Close()
		return nil, reply{}, fmt.Errorf("greeting from %s: %w", addr, err)
	}
	return c, greeting, nil
}

// mustDial is dial for tests that need a session and a 220.
func mustDial(t *testing.T, local, addr string) *client {
	t.Helper()
	c, greeting, err := dial(local, addr)
	if err != nil {
		t.Fatalf("connect %s -> %s: %v", local, addr, err)
	}
	t.Cleanup(func() { c.conn.Close() })
	if greeting.Code != 220 {
		t.Fatalf("greeting from %s: %v, want 220", addr, greeting)
	}
	return c
}

func (c *client) Close() error { return c.conn.Close() }

// write sends p as it is.
func (c *client) write(p []byte) error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(replyTimeout)); err != nil {
		return err
	}
	_, err := c.conn.Write(p)
	return err
}

// read reads one (possibly multi-line) reply.
func (c *client) read() (reply, error) {
	var r reply
	if err := c.conn.SetReadDeadline(time.Now().Add(replyTimeout)); err != nil {
		return r, err
	}
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && line == "" && len(r.Lines) == 0 {
				return r, io.EOF
			}
			return r, fmt.Errorf("reading reply (got %q so far): %w", line, err)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return r, fmt.Errorf("malformed reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return r, fmt.Errorf("malformed reply line %q", line)
		}
		if len(r.Lines) > 0 && code != r.Code {
			return r, fmt.Errorf("reply line %q continues a %d reply", line, r.Code)
		}
		r.Code = code
		text, more := "", false
		if len(line) > 3 {
			text, more = line[4:], line[3] == '-'
		}
		r.Lines = append(r.Lines, text)
		if !more {
			return r, nil
		}
	}
}

// cmd sends one command line (CRLF appended) and reads its reply.
func (c *client) cmd(line string) (reply, error) {
	if err := c.write([]byte(line + "\r\n")); err != nil {
		return reply{}, fmt.Errorf("sending %q: %w", line, err)
	}
	r, err := c.read()
	if err != nil {
		return r, fmt.Errorf("reply to %q: %w", line, err)
	}
	return r, nil
}

// expect sends a command and fails the test unless the reply has code want.
func (c *client) expect(t *testing.T, line string, want int) reply {
	t.Helper()
	r, err := c.cmd(line)
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != want {
		t.Fatalf("%s -> %v, want %d", line, r, want)
	}
	return r
}

// transaction runs MAIL, RCPT for each recipient, DATA and sends data (the
// message as dataBytes encodes it). It returns the reply to the final dot.
// Any reply other than 250 (354 for DATA) before that is an error.
func (c *client) transaction(from string, rcpts []string, data []byte) (reply, error) {
	type step struct {
		line string
		want int
	}
	steps := []step{{"MAIL FROM:<" + from + ">", 250}}
	for _, rc := range rcpts {
		steps = append(steps, step{"RCPT TO:<" + rc + ">", 250})
	}
	steps = append(steps, step{"DATA", 354})
	for _, s := range steps {
		r, err := c.cmd(s.line)
		if err != nil {
			return r, err
		}
		if r.Code != s.want {
			return r, fmt.Errorf("%s -> %v, want %d", s.line, r, s.want)
		}
	}
	if err := c.write(data); err != nil {
		return reply{}, fmt.Errorf("sending message data: %w", err)
	}
	r, err := c.read()
	if err != nil {
		return r, fmt.Errorf("reply to end of data: %w", err)
	}
	return r, nil
}

// send is transaction for tests: it fails unless the message is accepted
// with a 250 naming an ID, and returns that ID.
func (c *client) send(t *testing.T, from string, rcpts []string, data []byte) string {
	t.Helper()
	r, err := c.transaction(from, rcpts, data)
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != 250 || r.ID() == "" {
		t.Fatalf("end of data -> %v, want 250 with id=", r)
	}
	return r.ID()
}

// rcptReply opens a session from local to addr, gives MAIL FROM:<from>,
// which must be accepted, and returns the reply to RCPT TO:<to>.
func rcptReply(t *testing.T, local, addr, from, to string) reply {
	t.Helper()
	c := mustDial(t, local, addr)
	defer c.Close()
	c.expect(t, "EHLO client.test", 250)
	c.expect(t, "MAIL FROM:<"+from+">", 250)
	r, err := c.cmd("RCPT TO:<" + to + ">")
	if err != nil {
		t.Fatal(err)
	}
	c.expect(t, "QUIT", 221)
	return r
}

// dataBytes encodes a message (LF or CRLF line endings) as the DATA phase
// sends it: CRLF line endings, dot-stuffed, ending with CRLF.CRLF.
func dataBytes(msg []byte) []byte {
	msg = bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
	msg = bytes.TrimSuffix(msg, []byte("\n"))
	var b bytes.Buffer
	for _, line := range bytes.Split(msg, []byte("\n")) {
		if bytes.HasPrefix(line, []byte(".")) {
			b.WriteByte('.')
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}
