package auth

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Dovecot checks passwords with Dovecot's auth client protocol over its
// auth-client socket (what Postfix's and Exim's dovecot authenticators
// speak): VERSION and CPID, the server's handshake up to DONE, then
// "AUTH<TAB>id<TAB>PLAIN<TAB>service=smtp<TAB>secured<TAB>resp=BASE64",
// answered by OK, FAIL or CONT. One connection carries one request at a
// time; it is kept between checks and dialled again after any trouble.
type Dovecot struct {
	path    string
	timeout time.Duration

	mu   sync.Mutex // one request at a time on c
	c    *dovecotConn
	next uint32
}

type dovecotConn struct {
	nc net.Conn
	r  *bufio.Reader
}

// maxLine bounds a line read from the socket (Dovecot's own: 8 KiB).
const maxLine = 16384

// NewDovecot is a backend on the auth-client socket at path; timeout
// bounds each check, connect included.
func NewDovecot(path string, timeout time.Duration) *Dovecot {
	return &Dovecot{path: path, timeout: timeout}
}

// Check asks Dovecot with the PLAIN mechanism.
func (d *Dovecot) Check(ctx context.Context, user, pass string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	d.mu.Lock()
	defer d.mu.Unlock()
	for attempt := 0; ; attempt++ {
		reused := d.c != nil
		if d.c == nil {
			c, err := d.dial(ctx)
			if err != nil {
				return false, fmt.Errorf("%w: dovecot auth socket %s: %w", ErrBackend, d.path, err)
			}
			d.c = c
		}
		ok, err := d.ask(ctx, user, pass)
		if err == nil {
			return ok, nil
		}
		d.c.nc.Close()
		d.c = nil
		// A kept connection Dovecot closed meanwhile is dialled again once.
		if !reused || attempt > 0 || ctx.Err() != nil {
			return false, fmt.Errorf("%w: dovecot auth socket %s: %w", ErrBackend, d.path, err)
		}
	}
}

func (d *Dovecot) dial(ctx context.Context) (*dovecotConn, error) {
	var dl net.Dialer
	nc, err := dl.DialContext(ctx, "unix", d.path)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	c := &dovecotConn{nc: nc, r: bufio.NewReaderSize(nc, 4096)}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	if _, err := fmt.Fprintf(nc, "VERSION\t1\t2\nCPID\t%d\n", os.Getpid()); err != nil {
		nc.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if err := readHandshake(c.r); err != nil {
		nc.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return c, nil
}

// readHandshake reads the server's lines up to DONE: VERSION with major
// 1 first, and a MECH line for PLAIN among them.
func readHandshake(r *bufio.Reader) error {
	plain := false
	for first := true; ; first = false {
		line, err := readLine(r)
		if err != nil {
			return err
		}
		f := strings.Split(line, "\t")
		switch {
		case first:
			if len(f) < 3 || f[0] != "VERSION" {
				return fmt.Errorf("not an auth-client socket: first line %q", clip(line))
			}
			if f[1] != "1" {
				return fmt.Errorf("unsupported auth protocol version %s.%s", f[1], f[2])
			}
		case f[0] == "MECH" && len(f) > 1 && strings.EqualFold(f[1], "PLAIN"):
			plain = true
		case f[0] == "DONE":
			if !plain {
				return errors.New("dovecot offers no PLAIN mechanism (auth_mechanisms)")
			}
			return nil
		}
	}
}

func (d *Dovecot) ask(ctx context.Context, user, pass string) (bool, error) {
	c := d.c
	stop := context.AfterFunc(ctx, func() { c.nc.Close() })
	defer stop()
	d.next++
	id := d.next
	resp := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	// secured: the client is on TLS (Dovecot refuses plaintext logins
	// otherwise); no-penalty: failures are throttled here, not by a
	// Dovecot delay that would outlast the timeout.
	if _, err := fmt.Fprintf(c.nc, "AUTH\t%d\tPLAIN\tservice=smtp\tsecured\tno-penalty\tresp=%s\n", id, resp); err != nil {
		return false, ctxErr(ctx, err)
	}
	line, err := readLine(c.r)
	if err != nil {
		return false, ctxErr(ctx, err)
	}
	return ParseAuthReply(line, id)
}

// ParseAuthReply reads Dovecot's answer to AUTH request id: OK (true),
// FAIL (false; with a "temp" parameter, an error: Dovecot could not
// decide), anything else an error.
func ParseAuthReply(line string, id uint32) (bool, error) {
	f := strings.Split(line, "\t")
	if len(f) < 2 {
		return false, fmt.Errorf("unexpected reply %q", clip(line))
	}
	got, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil || uint32(got) != id {
		return false, fmt.Errorf("reply %q is not to request %d", clip(line), id)
	}
	switch f[0] {
	case "OK":
		return true, nil
	case "FAIL":
		for _, p := range f[2:] {
			if p == "temp" {
				return false, fmt.Errorf("temporary failure: %q", clip(line))
			}
		}
		return false, nil
	case "CONT":
		return false, errors.New("dovecot asked for more than PLAIN's one response")
	}
	return false, fmt.Errorf("unexpected reply %q", clip(line))
}

func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		part, isPrefix, err := r.ReadLine()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		b = append(b, part...)
		if len(b) > maxLine {
			return "", fmt.Errorf("line longer than %d bytes", maxLine)
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

// Ping connects to the auth-client socket at path and reads its
// handshake (config check --probe).
func Ping(ctx context.Context, path string) error {
	c, err := (&Dovecot{path: path}).dial(ctx)
	if err != nil {
		return err
	}
	return c.nc.Close()
}

// Close closes the kept connection.
func (d *Dovecot) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.c != nil {
		d.c.nc.Close()
		d.c = nil
	}
	return nil
}
