// Package starttls upgrades an SMTP or LMTP client connection to TLS
// beside a go-smtp client, which has no exported StartTLS (its helpers
// say EHLO localhost): the command, the refusal of clear-text data after
// the 220 (the CVE-2011-0411 class of bug) and the handshake, for
// delivery and for recipient callouts alike.
package starttls

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/textproto"
	"time"
)

// HandshakeError is a failed TLS handshake, or clear-text data after the
// server's 220: the connection is lost, unlike a refused STARTTLS.
type HandshakeError struct{ Err error }

func (e *HandshakeError) Error() string { return "TLS handshake: " + e.Err.Error() }
func (e *HandshakeError) Unwrap() error { return e.Err }

// Client speaks STARTTLS on raw and returns the TLS connection over it,
// each step within timeout (zero: none). A refusal is a *textproto.Error,
// a failed handshake a *HandshakeError. The caller greets again on the
// new connection with a new client, which forgets what was learnt in
// clear as RFC 3207 demands.
func Client(ctx context.Context, raw net.Conn, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	if err := raw.SetDeadline(deadline(timeout)); err != nil {
		return nil, err
	}
	defer raw.SetDeadline(time.Time{})
	if _, err := io.WriteString(raw, "STARTTLS\r\n"); err != nil {
		return nil, err
	}
	br := bufio.NewReader(raw)
	if _, _, err := textproto.NewReader(br).ReadResponse(220); err != nil {
		return nil, err
	}
	if br.Buffered() > 0 {
		// Anything the server sent after its 220 would be read as if it
		// came over TLS: refuse it.
		return nil, &HandshakeError{errors.New("remote host sent clear-text data after its STARTTLS reply")}
	}
	return Handshake(ctx, raw, cfg, timeout)
}

// Handshake runs the TLS client handshake on raw within timeout (zero:
// none), for STARTTLS and for implicit TLS. Its error is a
// *HandshakeError.
func Handshake(ctx context.Context, raw net.Conn, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	if err := raw.SetDeadline(deadline(timeout)); err != nil {
		return nil, &HandshakeError{err}
	}
	defer raw.SetDeadline(time.Time{})
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, &HandshakeError{err}
	}
	return tc, nil
}

// deadline is d from now; zero (no deadline) for a zero d.
func deadline(d time.Duration) time.Time {
	if d == 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}
