// Package filters owns the check pipeline: every decision mxgate takes on
// a session (relay policy, DNS lists, callouts, milters, scanners, message
// authentication, signing) is a Check with one Session per connection
// answering per SMTP stage with one result type, the Verdict. The Pipeline
// asks the checks in order, runs the content scanners in parallel under
// their own timeouts and circuit breakers, survives a check that panics or
// hangs, and combines the verdicts in exactly one place (strictest wins);
// each check's verdict comes back as an Event from which the gateway makes
// the SMTP reply, the log lines and the -bh trace. Scanners that only read
// the finished message implement the smaller Filter interface.
package filters

import (
	"bufio"
	"context"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"mxgate/spool"
)

// Message is the spooled copy a check reads at DATA: the header block in
// memory and the body on disk (never the whole message in memory).
// Sequential checks (milters) may change the envelope, the headers and the
// body; the parallel scanners see the result.
type Message struct {
	ID         spool.ID
	Sender     string // "" = <>
	Recipients []string
	ClientIP   netip.Addr
	Helo       string
	// Trusted: the client is in relay.trusted_networks (DKIM signing).
	Trusted bool
	// AuthUser is the client's SMTP AUTH login, "" when it has none
	// (the sender policy; DKIM signing, as for Trusted).
	AuthUser string
	// Headers as received, our Received first, LF endings. Fields a check
	// owns (Owner) are already marked deleted ('*'); Open leaves deleted
	// fields out.
	Headers []spool.Header
	// Size is headers + blank line + body in LF form.
	Size int64
	// OpenBody returns the body bytes with LF endings.
	OpenBody func() (io.ReadCloser, error)
	// ReplaceBody replaces the body (LF or CRLF line ends) and returns its
	// new size; nil where the body cannot be replaced (a -bh session).
	ReplaceBody func(io.Reader) (int64, error)
	// BodySize is the body's size in LF form.
	BodySize int64
}

// HeaderSize is the size of the fields not deleted.
func (m *Message) HeaderSize() int64 { return spool.HeaderSize(m.Headers) }

// Open returns the whole message (headers, blank line, body). crlf=true
// converts LF to CRLF on the fly: spamd wants the message as received on the
// wire, and its byte count must match the Content-length sent before it.
func (m *Message) Open(crlf bool) (io.ReadCloser, error) {
	body, err := m.OpenBody()
	if err != nil {
		return nil, err
	}
	var hdr strings.Builder
	for _, h := range m.Headers {
		if h.Type == '*' {
			continue
		}
		hdr.WriteString(h.Text)
	}
	hdr.WriteString("\n")
	r := io.MultiReader(strings.NewReader(hdr.String()), body)
	if crlf {
		r = &crlfReader{r: bufio.NewReader(r)}
	}
	return struct {
		io.Reader
		io.Closer
	}{r, body}, nil
}

// OpenSize is the number of bytes Open(crlf) yields, for protocols that
// announce the length before the data (SPAMC's Content-length). It reads the
// body once when crlf is true, because the LF count is not stored.
func (m *Message) OpenSize(crlf bool) (int64, error) {
	if !crlf {
		return m.Size, nil
	}
	rc, err := m.Open(true)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	return io.Copy(io.Discard, rc)
}

// crlfReader turns every LF into CRLF. The spool stores LF-only text, so
// there are no existing CRLF pairs to preserve.
type crlfReader struct {
	r       *bufio.Reader
	pending bool // an LF is owed after the CR just emitted
}

func (c *crlfReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if c.pending {
			p[n] = '\n'
			n++
			c.pending = false
			continue
		}
		b, err := c.r.ReadByte()
		if err != nil {
			if n > 0 && err == io.EOF {
				return n, nil
			}
			return n, err
		}
		if b == '\n' {
			p[n] = '\r'
			n++
			c.pending = true
			continue
		}
		p[n] = b
		n++
		// Return what we have rather than block on a slow body reader.
		if c.r.Buffered() == 0 {
			break
		}
	}
	return n, nil
}

// Action is what a verdict asks the gateway to do. The numeric order is
// the strictness order the Pipeline combines verdicts by: Reject >
// Tempfail > Quarantine > Discard > Tag > Accept. A permanent refusal beats
// a temporary one (retrying a message some check refuses outright only
// wastes the client's time); keeping a copy in quarantine beats silently
// dropping it; Tag is an accept whose Log becomes a mainlog Warning line.
type Action int

const (
	Accept Action = iota
	Tag
	Discard
	Quarantine
	Tempfail
	Reject
)

func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Tag:
		return "tag"
	case Discard:
		return "discard"
	case Quarantine:
		return "quarantine"
	case Tempfail:
		return "tempfail"
	case Reject:
		return "reject"
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// Verdict is the one result type: what a check decided at one stage, or
// the pipeline's combined decision.
type Verdict struct {
	Action   Action
	Code     int    // SMTP reply for Reject/Tempfail, e.g. 550
	Enhanced [3]int // e.g. {5,7,1}
	Text     string // "Virus found: Eicar-Test-Signature"; may hold "\n" for a multi-line reply
	Reason   string // for quarantine and logs
	// ReasonCode says which rule decided, as data: "relay-denied",
	// "rbl-listed", "sender-verify-failed", "virus", "spam-score", ...
	ReasonCode string
	// What the check found, as data for metrics and tracking: a spam
	// score (Scored says it is one), the virus a scanner named, the DNS
	// list that decided.
	Score  float64
	Scored bool
	Virus  string
	List   string
	// Headers to stamp on accept/quarantine (a sequential check's at once,
	// so the checks after it see them), e.g.
	// {Type: ' ', Text: "X-Spam-Status: Yes, score=12.1\n"}.
	Headers []spool.Header
	// Edits change fields the message already has (the Subject tag), by
	// their index in Message.Headers; applied on accept and quarantine.
	Edits []HeaderEdit
	// Log is the why of the verdict for the logs: the reason of a
	// refusal in the rejectlog line the gateway writes, the facts of a
	// scan ("spamd score=12.1 required=5.0"), a Tag's Warning.
	Log string
	// Logs are further lines the check wants logged.
	Logs []LogLine
	// Trace lines explain the decision in a -bh session.
	Trace []string
	// Hold, at DATA on a message to be accepted, freezes it in the queue
	// under this key (a rate limit's action = "hold": "NAME:VALUE"),
	// where it waits for `mxgate hold release` or `hold drop`.
	Hold string
}

// LocalProblem is the verdict when mxgate itself failed (a spool file
// could not be read, a check panicked): the client should try again.
func LocalProblem() Verdict {
	return Verdict{Action: Tempfail, Code: 451, Enhanced: [3]int{4, 3, 0}, Text: "Local problem: message not queued", ReasonCode: "local-problem"}
}

// Refuses reports whether the verdict refuses the command.
func (v Verdict) Refuses() bool { return v.Action == Reject || v.Action == Tempfail }

// HeaderEdit replaces or deletes one header field of the message.
type HeaderEdit struct {
	Index int    // position in Message.Headers
	Text  string // the new field, "Name: value\n"; "" deletes it (marked '*', as Exim keeps it in -H)
}

// Filter is one content scanner.
type Filter interface {
	Name() string // "spamd", "clamd"
	// Check scans m. An error means the scanner failed (down, timeout,
	// garbage answer); the Chain then applies the entry's on_error policy.
	Check(ctx context.Context, m *Message) (Verdict, error)
}

// Uncheckable is implemented by filters that stamp a message accepted
// without a scan (on_error "accept"), e.g. "X-Spam-Status: Unchecked".
type Uncheckable interface {
	Unchecked(err error) []spool.Header
}

// On-error policies of an Entry.
const (
	OnErrorTempfail = "tempfail"
	OnErrorAccept   = "accept"
)

// Entry is one filter in a Chain with its policy.
type Entry struct {
	Filter  Filter
	Timeout time.Duration // per check (config fills it); 0: the caller's context alone bounds it
	OnError string        // OnErrorTempfail (also "": a failure never lets mail through unscanned by mistake) or OnErrorAccept
	// Circuit breaker: after BreakAfter consecutive failures the filter is
	// not called for CoolDown (each message counts as a failure of it, so
	// OnError applies), then one real check probes it. BreakAfter 0 = off.
	BreakAfter int
	CoolDown   time.Duration
}

// FilterResult is what one entry contributed to a Run.
type FilterResult struct {
	Name     string
	Verdict  Verdict // after on_error was applied when Err != nil
	Err      error
	Duration time.Duration
}
