// Package deliver owns the transports: to the downstream store, SMTP
// (opportunistic STARTTLS), LMTP over TCP or a unix socket (per-recipient
// replies) and Maildir; out to the Internet, the MX transport (NewMX:
// direct delivery to each recipient domain's MX hosts, with MTA-STS and
// DANE) and the smarthost (New with an smtp or smtps Target, AUTH over
// TLS). Every SMTP and LMTP session, whoever the peer, is one function
// (peer.attempt), over connections each transport keeps per destination
// between messages (pool.go: RSET, then MAIL and the RCPTs pipelined). A
// transport makes one attempt and reports a result per recipient;
// retrying is the queue's business.
package deliver

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// Status is the outcome of one delivery attempt for one recipient.
type Status int

const (
	// Delivered: the downstream took responsibility for the message.
	Delivered Status = iota
	// Deferred: a temporary problem (4xx, connection trouble, timeout,
	// local I/O error); the queue tries again later.
	Deferred
	// Failed: a permanent refusal (5xx, an address that cannot be
	// delivered); the queue bounces.
	Failed
)

// String names the status for logs and test failures.
func (s Status) String() string {
	switch s {
	case Delivered:
		return "Delivered"
	case Deferred:
		return "Deferred"
	case Failed:
		return "Failed"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Reason says, as data, why a recipient was not delivered; Err says it
// in words. The queue takes Exim's "defer (N)" errno from it.
type Reason int

const (
	// NoReason: delivered, or nothing more specific is known.
	NoReason Reason = iota
	// RemoteTemp: the remote server refused with a 4xx reply.
	RemoteTemp
	// RemotePerm: the remote server refused with a 5xx reply.
	RemotePerm
	// Refused: the connection was refused (ECONNREFUSED).
	Refused
	// ConnectFailed: the connection could not be made for another
	// reason (no route, DNS, network unreachable).
	ConnectFailed
	// Timeout: connecting, or waiting for a reply, timed out.
	Timeout
	// ConnectionLost: the remote host closed or reset the connection.
	ConnectionLost
	// ProtocolError: the remote host said something that is not SMTP.
	ProtocolError
	// TLSRequired: starttls = "required", and the server did not offer
	// STARTTLS or refused it.
	TLSRequired
	// TLSFailure: the TLS handshake failed.
	TLSFailure
	// BadAddress: an address that cannot be sent as it is (malformed, or
	// non-ASCII to a server without SMTPUTF8).
	BadAddress
	// MaildirUnsafePath: a local part, domain or user that is unsafe as
	// a Maildir path, or a symlink met on the way to the Maildir.
	MaildirUnsafePath
	// LocalError: a local problem: reading the spooled message, writing
	// the Maildir.
	LocalError
	// Abandoned: the attempt was cancelled (shutdown).
	Abandoned
	// NoResult: the transport gave no result for the recipient (set by
	// the queue, never by a transport).
	NoResult
	// AuthFailed: the smarthost refused our AUTH, offers no mechanism we
	// speak, or the session was not encrypted.
	AuthFailed
	// Unroutable: the recipient's domain does not exist, accepts no mail
	// (null MX), or has no mail host with a usable address.
	Unroutable
	// PolicyRefused: the domain's MTA-STS policy allows none of its MX
	// hosts.
	PolicyRefused
	// OverQuota: the store said the mailbox is full (RFC 3463 X.2.2 in a
	// 552 or 452 reply); the route's over_quota policy decides what
	// follows, whatever the reply's class.
	OverQuota
)

var reasonNames = [...]string{
	NoReason:          "none",
	RemoteTemp:        "remote 4xx",
	RemotePerm:        "remote 5xx",
	Refused:           "connection refused",
	ConnectFailed:     "connect failed",
	Timeout:           "timeout",
	ConnectionLost:    "connection lost",
	ProtocolError:     "protocol error",
	TLSRequired:       "TLS required",
	TLSFailure:        "TLS failure",
	BadAddress:        "bad address",
	MaildirUnsafePath: "maildir unsafe path",
	LocalError:        "local error",
	Abandoned:         "abandoned",
	NoResult:          "no result",
	AuthFailed:        "authentication failed",
	Unroutable:        "unroutable",
	PolicyRefused:     "refused by policy",
	OverQuota:         "over quota",
}

// String names the reason for logs and test failures.
func (r Reason) String() string {
	if r >= 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// Result is what happened to one recipient.
type Result struct {
	Rcpt   string
	Status Status
	Reason Reason // why it was not delivered; NoReason when it was
	Host   string // "name [ip]" for H=, the socket path for lmtp+unix, "" for maildir
	Reply  string // the remote reply, e.g. "250 2.0.0 Ok: queued as 4Xyz" (C= on =>, text on ** and ==)
	Err    string // what failed, as a mainlog line wants it: "SMTP error from remote mail server after RCPT TO:<a@b>: 550 5.1.1 no such user", "Connection refused", ...
}

// Message is one message to deliver to some of its recipients.
type Message struct {
	ID         string
	Sender     string   // "" = <>
	Recipients []string // only these
	Size       int64
	Open       func() (io.ReadCloser, error) // whole message, LF line endings
}

// open is m.Open, refusing a Message built without one rather than
// panicking in the middle of a queue run.
func (m *Message) open() (io.ReadCloser, error) {
	if m.Open == nil {
		return nil, errors.New("message has no body (Message.Open is nil)")
	}
	r, err := m.Open()
	if err == nil && r == nil {
		err = errors.New("message has no body (Message.Open returned nil)")
	}
	return r, err
}

// Transport delivers messages to one downstream.
type Transport interface {
	Name() string                                     // "smtp", "lmtp", "maildir": logged as T=
	Deliver(ctx context.Context, m *Message) []Result // exactly one Result per recipient, in order
}

// Closer is a Transport that keeps sessions open between messages (SMTP,
// LMTP, the smarthost, the MX transport). Close ends them (QUIT, as long as
// ctx lets it), at shutdown, after the last delivery.
type Closer interface {
	Close(ctx context.Context)
}

// Options tune the network transports; Maildir ignores them. They are
// taken as given: package config fills every one (its [downstream] section
// and hostname, or [outbound] for the smarthost) and checks it, so a zero
// timeout here means no timeout.
type Options struct {
	Hostname                                    string // EHLO/LHLO name
	ConnectTimeout, CommandTimeout, DataTimeout time.Duration
	StartTLS                                    string // "opportunistic" | "none" | "required"; smtps ignores it: always TLS
	TLSVerify                                   bool
	// RootCAs verifies the server's certificate when TLSVerify is set;
	// nil = the system's roots.
	RootCAs *x509.CertPool
	// AuthUser and AuthPassword log in to a smarthost (AUTH PLAIN, or
	// LOGIN when the server offers only that), only over TLS; "" = no
	// AUTH.
	AuthUser, AuthPassword string
	// IdleTimeout keeps a session open this long after a message, for the
	// next one to the same destination (RSET, then MAIL); 0 = none kept,
	// QUIT after each message.
	IdleTimeout time.Duration
	// MaxConnections bounds the sessions open at once to the destination,
	// in use and idle; a delivery beyond it waits, as long as its context
	// lets it. 0 = no bound.
	MaxConnections int
	// MaxMessages is how many messages one session carries before QUIT;
	// 0 = no bound.
	MaxMessages int
}

// STARTTLS modes.
const (
	tlsOpportunistic = "opportunistic"
	tlsNone          = "none"
	tlsRequired      = "required"
)

// Target is where the downstream is: downstream.url as package config
// parsed and checked it (config.Target has the same fields, in the same
// order, and converts to Target).
type Target struct {
	Scheme string // "smtp", "smtps", "lmtp", "lmtp+unix" or "maildir"
	Host   string // smtp, smtps, lmtp: a host name or an IP address, without brackets
	Port   int    // smtp, smtps, lmtp
	Path   string // lmtp+unix, maildir: absolute and clean
}

// New returns the transport for a downstream or a smarthost: SMTP or LMTP
// to Host:Port (smtps: SMTP in TLS from the first byte, RFC 8314), LMTP
// to the unix socket Path, or the Maildirs under Path.
func New(t Target, o Options) (Transport, error) {
	tp := tlsPolicy{mode: o.StartTLS, pkix: o.TLSVerify, roots: o.RootCAs}
	switch t.Scheme {
	case "smtp", "smtps", "lmtp":
		if t.Scheme == "smtps" {
			tp.mode = tlsRequired
		}
		return &smtpTransport{&peer{
			lmtp:        t.Scheme == "lmtp",
			network:     "tcp",
			addr:        net.JoinHostPort(t.Host, strconv.Itoa(t.Port)),
			host:        t.Host,
			o:           o,
			tls:         tp,
			implicitTLS: t.Scheme == "smtps",
			pool:        newPool(o.MaxConnections, o.MaxMessages, o.IdleTimeout),
		}}, nil
	case "lmtp+unix":
		return &smtpTransport{&peer{lmtp: true, network: "unix", addr: t.Path, o: o, tls: tp,
			pool: newPool(o.MaxConnections, o.MaxMessages, o.IdleTimeout)}}, nil
	case "maildir":
		return NewMaildir(MaildirOptions{Root: t.Path, Layout: DefaultLayout, Mode: 0o700, UID: -1, GID: -1}), nil
	}
	return nil, fmt.Errorf("downstream: unknown scheme %q (want smtp, smtps, lmtp, lmtp+unix or maildir)", t.Scheme)
}

// results makes one Result per recipient, every one set to st/why/err: the
// start of every Deliver, and the whole answer when nothing could be tried.
func results(m *Message, host string, st Status, why Reason, err string) []Result {
	rs := make([]Result, len(m.Recipients))
	for i, r := range m.Recipients {
		rs[i] = Result{Rcpt: r, Status: st, Reason: why, Host: host, Err: err}
	}
	return rs
}
