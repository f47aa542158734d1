package deliver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"mxgate/smtptext"
)

// wireConn is the net.Conn the go-smtp client talks through. go-smtp sets
// deadlines around each command and the final reply but none while the body
// is written, so a downstream that stops reading would hang a delivery
// forever: every Write here gets its own deadline. After STARTTLS the inner
// connection is the TLS one.
type wireConn struct {
	net.Conn
	writeTimeout time.Duration
	written      int64  // bytes accepted by the inner Write, before and after TLS
	greeting     []byte // read before the inner connection: see startTLS
}

func (w *wireConn) Read(p []byte) (int, error) {
	if len(w.greeting) > 0 {
		n := copy(p, w.greeting)
		w.greeting = w.greeting[n:]
		return n, nil
	}
	return w.Conn.Read(p)
}

func (w *wireConn) Write(p []byte) (int, error) {
	if err := w.Conn.SetWriteDeadline(time.Now().Add(w.writeTimeout)); err != nil {
		return 0, err
	}
	n, err := w.Conn.Write(p)
	w.written += int64(n)
	return n, err
}

// wireBody writes the message in DATA's wire form for
// smtp.Client.DataWire: CRLF line ends and a leading dot doubled (RFC 5321
// 4.5.2). Every line ending of its input — LF, CRLF or a lone CR — becomes
// one CRLF: a bare CR must never reach the wire (SMTP smuggling), and
// "\r\r\n" must not come out as "\r\r\r\n". It goes a line at a time with
// bytes.IndexByte; textproto's DotWriter, which it replaces, looked at
// every byte and was a sixth of the daemon's CPU with 100 KiB messages.
// The spool's form has no CR (the gateway wrote LF line ends), so the CR
// search is one pass a write that finds none.
type wireBody struct {
	w       io.Writer
	cr      bool // the last byte was a CR, already written as a line end
	mid     bool // within a line: the last byte written was not a line end
	written bool // anything at all
}

func (b *wireBody) Write(p []byte) (int, error) {
	b.written = b.written || len(p) > 0
	cr := bytes.IndexByte(p, '\r') // the next CR from i on; -1: none left
	for i := 0; i < len(p); {
		if b.cr {
			b.cr = false
			if p[i] == '\n' { // a CRLF's LF: the CR ended the line
				i++
				continue
			}
		}
		if !b.mid && p[i] == '.' {
			if _, err := io.WriteString(b.w, "."); err != nil {
				return 0, err
			}
		}
		if cr >= 0 && cr < i {
			if cr = bytes.IndexByte(p[i:], '\r'); cr >= 0 {
				cr += i
			}
		}
		j := bytes.IndexByte(p[i:], '\n')
		if j >= 0 {
			j += i
		}
		if cr >= 0 && (j < 0 || cr < j) {
			j = cr
		}
		if j < 0 {
			if _, err := b.w.Write(p[i:]); err != nil {
				return 0, err
			}
			b.mid = true
			break
		}
		if _, err := b.w.Write(p[i:j]); err != nil {
			return 0, err
		}
		if _, err := io.WriteString(b.w, "\r\n"); err != nil {
			return 0, err
		}
		b.mid, b.cr = false, p[j] == '\r'
		i = j + 1
	}
	return len(p), nil
}

// finish ends a last line that has no line end, as the end of data needs;
// an empty message gets one empty line, as DotWriter gave it.
func (b *wireBody) finish() error {
	if !b.mid && b.written {
		return nil
	}
	b.mid = false
	_, err := io.WriteString(b.w, "\r\n")
	return err
}

// sourceError marks a failure reading the spooled message, so that it is
// not blamed on the remote host.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return "error reading message: " + e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &sourceError{err}
	}
	return n, err
}

// outcome classifies an error from one step of the SMTP or LMTP dialogue
// into a status, a reason, the server's reply ("" when the connection, not
// the server, failed) and Exim's wording. after names the step the way
// Exim's log does: "RCPT TO:<a@b>", "DATA", "end of data", "initial
// connection".
func outcome(ctx context.Context, proto, after string, err error) (Status, Reason, string, string) {
	var se *smtp.SMTPError
	var te *textproto.Error
	switch {
	case errors.As(err, &se):
		st, why := Deferred, RemoteTemp
		if se.Code >= 500 && se.Code < 600 {
			st, why = Failed, RemotePerm
		}
		if (se.Code == 552 || se.Code == 452) && se.EnhancedCode[1] == 2 && se.EnhancedCode[2] == 2 {
			// RFC 3463 X.2.2, mailbox full: the route's over_quota decides.
			why = OverQuota
		}
		// The reply the way the server sent it, on one line: "550 5.1.1
		// No such user" (go-smtp splits off the enhanced code and joins
		// continuation lines with LF; a mainlog line wants one line).
		r := smtptext.FromError(se)
		return st, why, r, proto + " error from remote mail server after " + after + ": " + r
	case errors.As(err, &te):
		// A reply go-smtp did not turn into an SMTPError (STARTTLS, which
		// is spoken here): same meaning.
		return outcome(ctx, proto, after, &smtp.SMTPError{Code: te.Code, Message: te.Msg})
	}
	why, text := trouble(ctx, "in response to "+after, err)
	return Deferred, why, "", text
}

// trouble words a failure that is not an SMTP reply; it is always temporary.
func trouble(ctx context.Context, when string, err error) (Reason, string) {
	var se *sourceError
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		return Abandoned, "delivery abandoned: " + context.Cause(ctx).Error()
	case errors.As(err, &se):
		return LocalError, se.Error()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return ConnectionLost, "Remote host closed connection " + when
	case errors.As(err, &ne) && ne.Timeout():
		return Timeout, "SMTP timeout " + strings.Replace(when, "in response to", "after", 1)
	}
	return ProtocolError, "SMTP protocol failure " + when + ": " + err.Error()
}

// dialError words a failed connect like Exim: "Connection refused",
// "Connection timed out".
func dialError(ctx context.Context, err error) (Reason, string) {
	var errno syscall.Errno
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		return Abandoned, "delivery abandoned: " + context.Cause(ctx).Error()
	case errors.As(err, &ne) && ne.Timeout():
		return Timeout, "Connection timed out"
	case errors.As(err, &errno):
		s := errno.Error()
		why := ConnectFailed
		if errno == syscall.ECONNREFUSED {
			why = Refused
		}
		return why, strings.ToUpper(s[:1]) + s[1:]
	}
	return ConnectFailed, err.Error()
}
