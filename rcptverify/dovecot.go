package rcptverify

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"mxgate/smtptext"
)

// dovecotStore asks Dovecot's auth-userdb socket (its auth master
// protocol, the one doveadm user and the LDA speak): after the VERSION
// handshake, "USER<TAB>id<TAB>user<TAB>service=smtp" is answered by USER
// (exists), NOTFOUND or FAIL. A connection carries one request at a time
// and is pooled between lookups. No CPID is sent: that belongs to the
// auth client protocol, and Dovecot 2.3's userdb socket answers it with
// "Unknown command" and a disconnect.
type dovecotStore struct {
	path    string
	timeout time.Duration
	pool    *pool[*userdbConn]
	ids     atomic.Uint32
}

type userdbConn struct {
	nc net.Conn
	r  *bufio.Reader
}

func (c *userdbConn) Close() error { return c.nc.Close() }

// maxLine bounds a line read from the socket: Dovecot's own limit of a
// master reply is 8 KiB.
const maxLine = 16384

func newDovecotStore(path string, o Options) *dovecotStore {
	s := &dovecotStore{path: path, timeout: o.Timeout}
	s.pool = newPool(o.MaxConnections, o.IdleTimeout, s.dial)
	return s
}

// dial connects and exchanges the handshake: the server's VERSION must
// have major version 1; its SPID line is skipped with the first reply,
// so nothing is awaited that the protocol does not promise.
func (s *dovecotStore) dial(ctx context.Context) (*userdbConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", s.path)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	c := &userdbConn{nc: nc, r: bufio.NewReaderSize(nc, 4096)}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	if _, err := io.WriteString(nc, "VERSION\t1\t0\n"); err != nil {
		nc.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	line, err := readLine(c.r)
	if err == nil {
		err = checkVersion(line)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return c, nil
}

// checkVersion checks the server's first line, "VERSION<TAB>1<TAB>minor".
func checkVersion(line string) error {
	f := strings.Split(line, "\t")
	if len(f) < 3 || f[0] != "VERSION" {
		return fmt.Errorf("not an auth-userdb socket: first line %q", clip(line))
	}
	if f[1] != "1" {
		return fmt.Errorf("auth master protocol version %s, want 1", clip(f[1]))
	}
	return nil
}

// lookup asks about key; a reused connection that fails before any reply
// (Dovecot closes idle master connections) is replaced, once.
func (s *dovecotStore) lookup(ctx context.Context, key string) Result {
	where := "dovecot userdb " + s.path
	for attempt := 0; ; attempt++ {
		c, reused, err := s.pool.get(ctx)
		if err != nil {
			return Result{Verdict: Defer, Detail: fmt.Sprintf("%s: %s", where, describe(err))}
		}
		res, answered := s.ask(ctx, c, key)
		s.pool.put(c, answered)
		if !answered && reused && attempt == 0 && ctx.Err() == nil {
			continue
		}
		if !answered && ctx.Err() != nil {
			res.Detail = fmt.Sprintf("%s: %v", where, context.Cause(ctx))
		} else {
			res.Detail = where + ": " + res.Detail
		}
		return res
	}
}

// ask sends one USER request on c and reads its reply; answered says the
// conversation is still in step (c may be reused).
func (s *dovecotStore) ask(ctx context.Context, c *userdbConn, key string) (Result, bool) {
	stop := context.AfterFunc(ctx, func() { c.nc.Close() })
	defer stop()
	id := s.ids.Add(1)
	if _, err := fmt.Fprintf(c.nc, "USER\t%d\t%s\tservice=smtp\n", id, tabEscape(key)); err != nil {
		return Result{Verdict: Defer, Detail: describe(err)}, false
	}
	for {
		line, err := readLine(c.r)
		if err != nil {
			return Result{Verdict: Defer, Detail: describe(err)}, false
		}
		v, detail, err := parseUserReply(line, id)
		if errors.Is(err, errOtherID) {
			continue // the handshake's SPID, or a late answer to a request given up on
		}
		if err != nil {
			return Result{Verdict: Defer, Detail: err.Error()}, false
		}
		return Result{Verdict: v, Detail: detail}, true
	}
}

var errOtherID = errors.New("reply to another request")

// parseUserReply reads the reply line to USER request id:
//
//	USER<TAB>id<TAB>user[<TAB>field=value...]  the user exists
//	NOTFOUND<TAB>id                            no such user
//	FAIL<TAB>id[<TAB>reason=...]               the lookup failed
//
// A line about another id, or the SPID line that ends the server's
// handshake, is errOtherID; anything else is an error. It
// reads bytes from the socket: any input gives an answer, never a panic.
func parseUserReply(line string, id uint32) (Verdict, string, error) {
	f := strings.Split(line, "\t")
	if len(f) < 2 {
		return Defer, "", fmt.Errorf("unexpected reply %q", clip(line))
	}
	if f[0] == "SPID" {
		return Defer, "", errOtherID
	}
	n, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return Defer, "", fmt.Errorf("unexpected reply %q", clip(line))
	}
	switch f[0] {
	case "USER", "NOTFOUND", "FAIL":
	default:
		return Defer, "", fmt.Errorf("unexpected reply %q", clip(line))
	}
	if uint32(n) != id {
		return Defer, "", errOtherID
	}
	switch f[0] {
	case "USER":
		if len(f) < 3 || f[2] == "" {
			return Defer, "", fmt.Errorf("USER reply without a user: %q", clip(line))
		}
		return Found, "USER " + clip(tabUnescape(f[2])), nil
	case "NOTFOUND":
		return NotFound, "NOTFOUND", nil
	}
	reason := "FAIL"
	for _, kv := range f[2:] {
		if r, ok := strings.CutPrefix(kv, "reason="); ok {
			reason += " " + clip(tabUnescape(r))
		}
	}
	return Defer, reason, nil
}

// readLine reads one LF-terminated line of at most maxLine bytes.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > maxLine {
			return "", fmt.Errorf("reply line longer than %d bytes", maxLine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		return strings.TrimSuffix(string(b[:len(b)-1]), "\r"), nil
	}
}

// tabEscape is Dovecot's str_tabescape: \001 escapes NUL, itself, TAB, CR
// and LF, so a user name cannot split a request.
func tabEscape(s string) string {
	if !strings.ContainsAny(s, "\x00\x01\t\r\n") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case 0:
			b.WriteString("\x010")
		case 1:
			b.WriteString("\x011")
		case '\t':
			b.WriteString("\x01t")
		case '\r':
			b.WriteString("\x01r")
		case '\n':
			b.WriteString("\x01l")
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// tabUnescape undoes tabEscape.
func tabUnescape(s string) string {
	if !strings.Contains(s, "\x01") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != 1 || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case '0':
			b.WriteByte(0)
		case '1':
			b.WriteByte(1)
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'l':
			b.WriteByte('\n')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// clip makes text from the socket safe for a log line.
func clip(s string) string { return smtptext.CleanMax(s, maxReply) }
