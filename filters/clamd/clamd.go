// Package clamd owns virus scanning through ClamAV's clamd: the INSTREAM
// client (TCP or unix socket, several servers tried in order), streaming
// the spooled message in chunks so it is never held in memory whole, the
// strict reading of clamd's reply, and the verdict a virus earns (550
// 5.7.1 or quarantine) with the X-Virus-Scanned stamp.
package clamd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"mxgate/filters"
	"mxgate/spool"
)

// chunkSize is the length of each INSTREAM chunk.
const chunkSize = 64 << 10

// connectTimeout bounds each connect, well below the per-message timeout
// of the filter chain, so that the next address is still tried when one
// is dead.
const connectTimeout = 10 * time.Second

// OnVirus policies.
const (
	OnVirusReject     = "reject"
	OnVirusQuarantine = "quarantine"
)

// Options configure a Filter. They are taken as given: package config
// ([clamd]) fills in every default and checks every value.
type Options struct {
	// Addresses of clamd, "host:port" or "unix:/path/to/socket", tried in
	// order until one gives an answer.
	Addresses []string
	// OnVirus is OnVirusReject or OnVirusQuarantine.
	OnVirus string
	// StampClean adds "X-Virus-Scanned: clamav (mxgate)" to clean mail.
	StampClean bool
}

// Errors a scan can end in; callers test them with errors.Is.
var (
	// ErrSizeLimit is clamd's "INSTREAM size limit exceeded": the message
	// is bigger than its StreamMaxLength, so it was not scanned.
	ErrSizeLimit = errors.New("message exceeds clamd's StreamMaxLength, not scanned (raise StreamMaxLength in clamd.conf to at least the gateway's max_message_size)")
	// ErrBadReply is a reply that is neither clean, a virus, nor an
	// error clamd documents: it never counts as clean.
	ErrBadReply = errors.New("unexpected reply")
)

// Filter scans messages with clamd. It is safe for concurrent use: every
// scan has its own connection.
type Filter struct {
	opts      Options
	chunkSize int // chunkSize; the tests make it small
}

// New returns a Filter for o.
func New(o Options) *Filter {
	return &Filter{opts: o, chunkSize: chunkSize}
}

// Name implements filters.Filter.
func (f *Filter) Name() string { return "clamd" }

const scannedHeader = "X-Virus-Scanned: clamav (mxgate)\n"

// Check implements filters.Filter: it streams the whole message (headers
// and body, LF endings) to clamd.
func (f *Filter) Check(ctx context.Context, m *filters.Message) (filters.Verdict, error) {
	virus, err := f.scan(ctx, func() (io.ReadCloser, error) { return m.Open(false) })
	if err != nil {
		return filters.Verdict{}, fmt.Errorf("clamd: message %s: %w", m.ID, err)
	}
	if virus == "" {
		v := filters.Verdict{Action: filters.Accept, Log: "clamd clean"}
		if f.opts.StampClean {
			v.Headers = []spool.Header{{Type: ' ', Text: scannedHeader}}
		}
		return v, nil
	}
	v := filters.Verdict{
		Reason:     "virus " + virus,
		ReasonCode: "virus",
		Virus:      virus,
		Log:        "clamd virus=" + virus,
	}
	if f.opts.OnVirus == OnVirusQuarantine {
		v.Action = filters.Quarantine
		return v, nil
	}
	v.Action, v.Code, v.Enhanced = filters.Reject, 550, [3]int{5, 7, 1}
	v.Text = "Virus found: " + virus
	return v, nil
}

// Unchecked implements filters.Uncheckable: the stamp of a message
// accepted although clamd could not scan it.
func (f *Filter) Unchecked(err error) []spool.Header {
	return []spool.Header{{Type: ' ', Text: "X-Virus-Scanned: unchecked (clamd: " + uncheckedReason(err) + ")\n"}}
}

// uncheckedReason names a failure in a few fixed words: the full error
// holds addresses and server text that do not belong in a header.
func uncheckedReason(err error) string {
	var nerr net.Error
	switch {
	case errors.Is(err, ErrSizeLimit):
		return "message too large"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return "timeout"
	case errors.Is(err, ErrBadReply):
		return "bad reply"
	case errors.Is(err, errUnreachable):
		return "unreachable"
	}
	return "error"
}

var errUnreachable = errors.New("no clamd reachable")

// scan streams what open returns to clamd and returns the name of the
// virus found, or "" when clamd says it is clean. It tries each address in
// order, opening the message afresh for each: a server that cannot be
// reached or fails (I/O error, bad reply) is skipped for the next one; an
// answer (clean, virus, size limit) or the end of ctx stops the search.
func (f *Filter) scan(ctx context.Context, open func() (io.ReadCloser, error)) (string, error) {
	if len(f.opts.Addresses) == 0 {
		return "", fmt.Errorf("%w: no address configured", errUnreachable)
	}
	var errs []error
	for _, addr := range f.opts.Addresses {
		// Opened first: a message the spool cannot read costs no server
		// a connection, and another server would fare no better.
		body, err := open()
		if err != nil {
			return "", fmt.Errorf("reading the message: %w", err)
		}
		conn, err := f.dial(ctx, addr)
		if err != nil {
			body.Close()
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		virus, err := f.scanConn(ctx, conn, addr, body)
		body.Close()
		if err == nil || errors.Is(err, ErrSizeLimit) || errors.Is(err, errLocal) || ctx.Err() != nil {
			return virus, err
		}
		errs = append(errs, err)
	}
	if len(errs) == len(f.opts.Addresses) && allUnreachable(errs) {
		return "", fmt.Errorf("%w: %w", errUnreachable, errors.Join(errs...))
	}
	return "", errors.Join(errs...)
}

type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func allUnreachable(errs []error) bool {
	for _, err := range errs {
		var d *dialError
		if !errors.As(err, &d) {
			return false
		}
	}
	return true
}

func (f *Filter) dial(ctx context.Context, addr string) (net.Conn, error) {
	network, address := "tcp", addr
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, address = "unix", path
	}
	d := net.Dialer{Timeout: connectTimeout}
	conn, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, &dialError{fmt.Errorf("connect to %s: %w", addr, err)}
	}
	return conn, nil
}

// errLocal marks a failure reading the message from the spool while it
// was being sent: another server would fare no better.
var errLocal = errors.New("reading the message")

// maxReply bounds what is read of a reply; clamd's are one short line.
const maxReply = 4096

type reply struct {
	b   []byte
	err error
}

// scanConn runs one INSTREAM on conn. The reply is read concurrently with
// the writing: clamd answers "size limit exceeded" and closes as soon as
// the quota is used up, possibly while chunks are still in flight, and the
// reset that follows could otherwise make the answer unreadable.
func (f *Filter) scanConn(ctx context.Context, conn net.Conn, addr string, body io.Reader) (string, error) {
	defer conn.Close()
	// ctx alone bounds the scan: when it ends, every read and write on
	// conn fails at once, and ctx.Err() is already set to say why.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(what string, err error) (string, error) {
		if cerr := ctx.Err(); cerr != nil {
			err = cerr
		}
		return "", fmt.Errorf("%s: %s: %w", addr, what, err)
	}

	replies := make(chan reply, 1)
	go func() {
		b, err := readReply(conn)
		replies <- reply{b, err}
	}()

	werr := f.stream(conn, body, replies)
	var lerr *localError
	if errors.As(werr, &lerr) {
		return "", fmt.Errorf("%w: %w", errLocal, lerr.err)
	}
	rep := <-replies
	if rep.err != nil {
		// A server that closed without a word says more than the write
		// error its closing caused.
		if werr != nil && !errors.Is(rep.err, io.ErrUnexpectedEOF) {
			return fail("sending the message", werr)
		}
		return fail("reading the reply", rep.err)
	}
	// A reply that came while the stream was still being written is
	// clamd's word on it (typically the size limit); the write error it
	// caused says nothing more.
	virus, err := ParseReply(rep.b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", addr, err)
	}
	return virus, nil
}

type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }

// stream writes the INSTREAM command, body in chunks and the terminating
// zero-length chunk. It stops early, without error, once a reply is in.
func (f *Filter) stream(conn net.Conn, body io.Reader, replies chan reply) error {
	if _, err := io.WriteString(conn, "zINSTREAM\x00"); err != nil {
		return err
	}
	buf := make([]byte, 4+f.chunkSize)
	for {
		n, rerr := io.ReadFull(body, buf[4:])
		if n > 0 {
			binary.BigEndian.PutUint32(buf, uint32(n))
			if _, err := conn.Write(buf[:4+n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return &localError{rerr}
		}
		select {
		case rep := <-replies:
			replies <- rep // for the caller, which reads it next
			return nil
		default:
		}
	}
	_, err := conn.Write([]byte{0, 0, 0, 0})
	return err
}

// readReply reads up to the NUL that ends a z-command reply.
func readReply(r io.Reader) ([]byte, error) {
	var b []byte
	buf := make([]byte, 512)
	for {
		n, err := r.Read(buf)
		b = append(b, buf[:n]...)
		if i := bytes.IndexByte(b, 0); i >= 0 {
			return b[:i+1], nil
		}
		if len(b) > maxReply {
			return nil, fmt.Errorf("%w: more than %d bytes without a NUL", ErrBadReply, maxReply)
		}
		if err != nil {
			if len(b) > 0 && (err == io.EOF || errors.Is(err, syscall.ECONNRESET)) {
				return b, nil // ParseReply refuses it: no NUL
			}
			// A peer that closes with our stream still unread resets the
			// connection instead of a clean EOF: the same event.
			if err == io.EOF || errors.Is(err, syscall.ECONNRESET) {
				return nil, fmt.Errorf("connection closed without a reply: %w", io.ErrUnexpectedEOF)
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, fmt.Errorf("no reply: %w", err)
			}
			return nil, err
		}
	}
}

// ParseReply reads one INSTREAM reply, NUL terminator included: the virus
// name for "stream: NAME FOUND", "" for "stream: OK". Everything else is
// an error, and never clean: ErrSizeLimit for the size limit, an error
// quoting clamd for "... ERROR", ErrBadReply for anything unexpected
// (no terminator, empty, a name with control characters).
func ParseReply(b []byte) (string, error) {
	s, ok := strings.CutSuffix(string(b), "\x00")
	if !ok {
		return "", fmt.Errorf("%w %q: not NUL-terminated", ErrBadReply, truncate(s))
	}
	if s == "stream: OK" {
		return "", nil
	}
	if s == "INSTREAM size limit exceeded. ERROR" {
		return "", ErrSizeLimit
	}
	if text, ok := strings.CutSuffix(s, " ERROR"); ok && printable(text) {
		return "", fmt.Errorf("clamd answered %q", s)
	}
	name, ok := strings.CutPrefix(s, "stream: ")
	if ok {
		name, ok = strings.CutSuffix(name, " FOUND")
	}
	// The name goes into an SMTP reply and the logs: one printable word.
	if !ok || name == "" || !printable(name) || strings.ContainsRune(name, ' ') {
		return "", fmt.Errorf("%w %q", ErrBadReply, truncate(s))
	}
	return name, nil
}

func printable(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}

func truncate(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
