// Package deliver owns the downstream transports: SMTP (opportunistic
// STARTTLS), LMTP over TCP or a unix socket (per-recipient replies), and
// Maildir. A transport makes one attempt and reports a result per recipient;
// retrying is the queue's business.
package deliver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
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
	// MaildirUnsafePath: a local part or domain that is unsafe as a
	// Maildir path.
	MaildirUnsafePath
	// LocalError: a local problem: reading the spooled message, writing
	// the Maildir.
	LocalError
	// Abandoned: the attempt was cancelled (shutdown).
	Abandoned
	// NoResult: the transport gave no result for the recipient (set by
	// the queue, never by a transport).
	NoResult
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

// Options tune the network transports; Maildir ignores them.
type Options struct {
	Hostname                                    string // EHLO/LHLO name; "" = os.Hostname()
	ConnectTimeout, CommandTimeout, DataTimeout time.Duration
	StartTLS                                    string // "opportunistic" (also "") | "none" | "required"
	TLSVerify                                   bool
}

// The defaults match the config package's, so a zero Options (tests, tools)
// behaves like an unconfigured gateway.
const (
	defaultConnectTimeout = 30 * time.Second
	defaultCommandTimeout = 5 * time.Minute
	defaultDataTimeout    = 10 * time.Minute
)

// STARTTLS modes.
const (
	tlsOpportunistic = "opportunistic"
	tlsNone          = "none"
	tlsRequired      = "required"
)

// New returns the transport for a downstream URL: smtp://host:port,
// lmtp://host:port, lmtp+unix:///path or maildir:///path.
func New(rawurl string, o Options) (Transport, error) {
	u, err := url.Parse(rawurl)
	if err != nil {
		return nil, fmt.Errorf("downstream URL %q: %w", rawurl, err)
	}
	if u.Opaque != "" {
		return nil, fmt.Errorf("downstream URL %q: want scheme://host:port or scheme:///path", rawurl)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("downstream URL %q: user info, query and fragment are not supported", rawurl)
	}
	switch u.Scheme {
	case "smtp", "lmtp":
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("downstream URL %q: a %s URL has no path (%s://host:port)", rawurl, u.Scheme, u.Scheme)
		}
		host, port := u.Hostname(), u.Port()
		if host == "" {
			return nil, fmt.Errorf("downstream URL %q: missing host", rawurl)
		}
		if port == "" {
			// The well-known ports: SMTP 25, LMTP has none of its own but
			// RFC 2033 forbids 25, and 24 is what every MDA defaults to.
			port = map[string]string{"smtp": "25", "lmtp": "24"}[u.Scheme]
		}
		if err := o.check(); err != nil {
			return nil, fmt.Errorf("downstream %q: %w", rawurl, err)
		}
		return &smtpTransport{
			lmtp:    u.Scheme == "lmtp",
			network: "tcp",
			addr:    net.JoinHostPort(host, port),
			host:    host,
			o:       o.withDefaults(),
		}, nil
	case "lmtp+unix":
		path, err := localPath(u)
		if err != nil {
			return nil, fmt.Errorf("downstream URL %q: %w", rawurl, err)
		}
		if err := o.check(); err != nil {
			return nil, fmt.Errorf("downstream %q: %w", rawurl, err)
		}
		return &smtpTransport{lmtp: true, network: "unix", addr: path, o: o.withDefaults()}, nil
	case "maildir":
		path, err := localPath(u)
		if err != nil {
			return nil, fmt.Errorf("downstream URL %q: %w", rawurl, err)
		}
		return newMaildir(path), nil
	}
	return nil, fmt.Errorf("downstream URL %q: unknown scheme %q (want smtp, lmtp, lmtp+unix or maildir)", rawurl, u.Scheme)
}

// localPath is the absolute path of a lmtp+unix or maildir URL. A relative
// "maildir://var/mail" would silently make "var" a host name, so an authority
// is refused outright.
func localPath(u *url.URL) (string, error) {
	if u.Host != "" {
		return "", fmt.Errorf("want an absolute path (%s:///path), got host %q", u.Scheme, u.Host)
	}
	if !filepath.IsAbs(u.Path) {
		return "", fmt.Errorf("want an absolute path (%s:///path)", u.Scheme)
	}
	return filepath.Clean(u.Path), nil
}

// check refuses options that cannot work, before any mail is at stake.
func (o Options) check() error {
	switch o.StartTLS {
	case "", tlsOpportunistic, tlsNone, tlsRequired:
	default:
		return fmt.Errorf("starttls %q: want opportunistic, none or required", o.StartTLS)
	}
	if o.ConnectTimeout < 0 || o.CommandTimeout < 0 || o.DataTimeout < 0 {
		return fmt.Errorf("negative timeout (connect %v, command %v, data %v)", o.ConnectTimeout, o.CommandTimeout, o.DataTimeout)
	}
	if strings.ContainsAny(o.Hostname, " \t\r\n\x00") {
		return fmt.Errorf("hostname %q: contains white space or control characters", o.Hostname)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Hostname == "" {
		o.Hostname = "localhost"
		if h, err := os.Hostname(); err == nil && h != "" && !strings.ContainsAny(h, " \t\r\n\x00") {
			o.Hostname = h
		}
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = defaultConnectTimeout
	}
	if o.CommandTimeout == 0 {
		o.CommandTimeout = defaultCommandTimeout
	}
	if o.DataTimeout == 0 {
		o.DataTimeout = defaultDataTimeout
	}
	if o.StartTLS == "" {
		o.StartTLS = tlsOpportunistic
	}
	return o
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
