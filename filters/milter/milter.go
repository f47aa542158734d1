// Package milter is mxgate's milter host: it calls external milters (rspamd,
// opendkim, clamav-milter, …) over the Sendmail milter protocol v6 at each
// SMTP stage, with the macros Postfix sends, and turns their replies into
// SMTP decisions and their end-of-message modifications into edits the
// gateway applies to the spooled message before commit. Every failure of a
// milter (refused connection, timeout, dropped connection, a reply the
// protocol does not allow) becomes that milter's on_error decision.
//
// It drives github.com/emersion/go-milter's client and works around its gaps
// (shared/reference/protocols.md §3.9): masks offered explicitly and checked,
// no SKIP or ADDRCPT_PAR offered, an own body-chunk loop, angle brackets and
// empty CHGFROM arguments stripped, and per-stage deadlines and context
// cancellation enforced through a wrapper around the connection, since the
// library has one per-packet timeout and no context.
//
// Log lines (the log function given to NewHost: failures, refusals,
// modifications) say which message or connection they are about, so that
// `exigrep` finds them. A line written while a message is handled
// (Session.Data: headers, body, end of message, its modifications, a
// failure at any of these, the abort after it) comes with the message's
// queue ID apart from the text: log(id, text) is mainlog's Main, so they
// are that message's lines, "2006-01-02 15:04:05 ID milter rspamd: add
// header X-Spamd-Bar: +++", and main.json has the ID as their id. Lines
// of the earlier stages (connect, HELO, MAIL, RCPT, RSET, QUIT) come
// before the message has an ID (the gateway assigns it at DATA, as Exim
// does): their id is "" and their text starts with the client as Exim
// writes it, "H=[192.0.2.1]", or "H=mail.client.test (helo.name)
// [192.0.2.1]" once the host and HELO names are known.
package milter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// Options configures one milter, like a Postfix smtpd_milters entry with its
// milter_default_action and milter_*_timeout settings. They are taken as
// given: package config ([[milter]]) fills in every default and checks
// every value.
type Options struct {
	Address        string        // "inet:host:port" or "unix:/path"
	Name           string        // for logs and Decision.Milter
	OnError        string        // "tempfail", "accept" or "reject"
	ConnectTimeout time.Duration // connect and option negotiation
	CommandTimeout time.Duration // each command up to end of headers
	EOMTimeout     time.Duration // body and end of message
}

// offerActions are the modifications mxgate can apply. ADDRCPT_PAR is left
// out: go-milter cannot parse its reply. SETSYMLIST is left out: go-milter
// ignores the symbol list, mxgate sends a fixed macro set.
const offerActions = gomilter.OptAddHeader | gomilter.OptChangeBody | gomilter.OptAddRcpt |
	gomilter.OptRemoveRcpt | gomilter.OptChangeHeader | gomilter.OptQuarantine | gomilter.OptChangeFrom

// offerProtocol are the steps a milter may leave out or not answer: every
// NO* and NR_* step, but not SKIP (go-milter cannot parse the `s` reply),
// RCPT_REJ (rejected recipients are not sent) or HDR_LEADSPC (values are
// sent without their leading space, as Postfix does). 0xff3ff.
const offerProtocol = gomilter.OptNoConnect | gomilter.OptNoHelo | gomilter.OptNoMailFrom |
	gomilter.OptNoRcptTo | gomilter.OptNoBody | gomilter.OptNoHeaders | gomilter.OptNoEOH |
	gomilter.OptNoHeaderReply | gomilter.OptNoUnknown | gomilter.OptNoData |
	gomilter.OptNoConnReply | gomilter.OptNoHeloReply | gomilter.OptNoMailReply |
	gomilter.OptNoRcptReply | gomilter.OptNoDataReply | gomilter.OptNoUnknownReply |
	gomilter.OptNoEOHReply | gomilter.OptNoBodyReply

// Host is the configured chain of milters, called in configuration order.
type Host struct {
	milters []milterConf
	log     func(id, text string)
}

type milterConf struct {
	Options
	network, address string
}

// NewHost returns the host of the milters opts describes; an address
// that is neither inet: nor unix: is an error. log receives one line per
// failure and per modification (nil discards them): id is the queue ID of
// the message the line is about, "" before DATA, and text the rest of the
// line, so mainlog.Logger.Main(id, text) writes it.
func NewHost(opts []Options, log func(id, text string)) (*Host, error) {
	h := &Host{log: log}
	if h.log == nil {
		h.log = func(string, string) {}
	}
	for i, o := range opts {
		c := milterConf{Options: o}
		if a, ok := strings.CutPrefix(o.Address, "inet:"); ok {
			c.network, c.address = "tcp", a
		} else if a, ok := strings.CutPrefix(o.Address, "unix:"); ok {
			c.network, c.address = "unix", a
		} else {
			return nil, fmt.Errorf("milter %d: address %q: want inet:host:port or unix:/path", i+1, o.Address)
		}
		h.milters = append(h.milters, c)
	}
	return h, nil
}

// deadlineConn caps every deadline go-milter sets (it re-arms its one
// per-packet timeout for each packet, and clears it after) at the deadline
// of the stage in progress, so a milter that trickles progress packets or
// answers slowly cannot hold a stage past its timeout.
type deadlineConn struct {
	net.Conn
	mu    sync.Mutex
	limit time.Time
}

func (c *deadlineConn) capped(t time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.limit.IsZero() {
		return t
	}
	if t.IsZero() || t.After(c.limit) {
		return c.limit
	}
	return t
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	return c.Conn.SetDeadline(c.capped(t))
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.capped(t))
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.capped(t))
}

// stage sets the deadline for one stage: now+timeout or ctx's deadline,
// whichever comes first; cancelling ctx expires it at once. The returned
// function ends the stage.
func (c *deadlineConn) stage(ctx context.Context, timeout time.Duration) (end func()) {
	limit := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(limit) {
		limit = d
	}
	c.mu.Lock()
	c.limit = limit
	c.mu.Unlock()
	_ = c.Conn.SetDeadline(limit)
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.limit = time.Unix(1, 0)
		c.mu.Unlock()
		_ = c.Conn.SetDeadline(time.Unix(1, 0))
	})
	return func() { stop() }
}

// client is the go-milter client of c's milter, offering what mxgate can
// handle, dialing through dialer; timeout is the one go-milter sets on
// every packet.
func (c *milterConf) client(dialer *ctxDialer, timeout time.Duration) *gomilter.Client {
	return gomilter.NewClientWithOptions(c.network, c.address, gomilter.ClientOptions{
		Dialer:       dialer,
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
		ActionMask:   offerActions,
		ProtocolMask: offerProtocol,
	})
}

// checkAgreed refuses a negotiation in which the milter asked for what
// was not offered: go-milter takes the milter's masks unchecked, and a
// bit we did not offer is a protocol error (libmilter refuses it too).
func checkAgreed(cs *gomilter.ClientSession) error {
	if extra := cs.ActionOpts &^ offerActions; extra != 0 {
		return fmt.Errorf("%w: actions 0x%x not offered (offered 0x%x)", errProtocol, uint32(extra), uint32(offerActions))
	}
	if extra := cs.ProtocolOpts &^ offerProtocol; extra != 0 {
		return fmt.Errorf("%w: steps 0x%x not offered (offered 0x%x)", errProtocol, uint32(extra), uint32(offerProtocol))
	}
	return nil
}

// ctxDialer dials under the session's context; go-milter's Dialer has no
// context parameter.
type ctxDialer struct {
	ctx     context.Context
	timeout time.Duration
	conn    *deadlineConn
}

func (d *ctxDialer) Dial(network, addr string) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.timeout}
	c, err := nd.DialContext(d.ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.conn = &deadlineConn{Conn: c}
	// Option negotiation runs inside Session(), before the caller sees the
	// connection: bound it by the connect timeout here.
	d.conn.limit = time.Now().Add(d.timeout)
	if dl, ok := d.ctx.Deadline(); ok && dl.Before(d.conn.limit) {
		d.conn.limit = dl
	}
	return d.conn, nil
}

// errProtocol marks replies the protocol does not allow at that point.
var errProtocol = errors.New("milter protocol violation")
