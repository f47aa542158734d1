package filters

import (
	"context"
	"net/netip"
	"sync/atomic"
)

// Stage is the point of an SMTP session at which a check is asked.
type Stage int

const (
	StageConnect Stage = iota // before the greeting
	StageHelo                 // at the first MAIL after HELO/EHLO (go-smtp has no HELO hook)
	StageMail
	StageRcpt
	StageData // on the spooled, not yet committed message
)

func (s Stage) String() string {
	return [...]string{"connect", "HELO", "MAIL", "RCPT", "DATA"}[s]
}

// Conn is what a check knows of the client when it connects.
type Conn struct {
	IP   netip.Addr
	Port int
	// ImplicitTLS: the greeting is encrypted, so a refusal in its place
	// could not be read; a check that refuses at connect must wait for a
	// later stage.
	ImplicitTLS bool
	// The client's reverse DNS (host_lookup), known from the connect
	// stage on: the gateway sets them before it, so not at Open.
	// HostName is the forward-confirmed name, "" when there is none;
	// HostPTR the first PTR name, confirmed or not; HostResolve how the
	// lookup went as Sendmail's {client_resolve} says it: "OK", "FAIL"
	// (no name, or no lookup), "FORGED" or "TEMP".
	HostName, HostPTR, HostResolve string
	// Allowlisted: a DNS allow-list (an rbl list of negative weight, a
	// DNSWL) lists the client's IP. Set by the rbl check once it has
	// weighed its lists (at RCPT, or at connect), read by the checks
	// after it (greylisting); atomic since a check the pipeline stopped
	// waiting for may still be running.
	Allowlisted atomic.Bool
	// ByMTA: the client is an MTA's session that mxgate serves as its
	// milter (package miltersrv). The MTA has applied its own relay
	// policy and routes the mail itself, so the relay and route checks
	// pass every recipient it passed on.
	ByMTA bool
}

// Tx is the transaction as the checks see it: fixed at MAIL, recipients
// added as they are accepted.
type Tx struct {
	Helo         string   // the HELO/EHLO name, made safe for logs
	Sender       string   // wire form, "" = null sender
	SenderDomain string   // "" for the null sender
	Rcpts        []string // accepted so far, wire form
	// AuthUser is the login the client authenticated as (SMTP AUTH), ""
	// when it did not; AuthMech its mechanism, lower-case ("plain").
	AuthUser, AuthMech string
}

// Check is one decision of the pipeline: relay policy, a DNS list, a
// callout, a milter, a scanner. It is opened once per connection; its
// Session then answers per stage.
type Check interface {
	Name() string
	// Open is called as the client is admitted, before the greeting, from
	// the accept loop: it must not block (start lookups, return at once).
	// ctx ends when the connection closes.
	Open(ctx context.Context, c *Conn) Session
}

// Session is one check's state for one connection. Every method returns a
// Verdict: Accept (the zero value) when the check has nothing to say. The
// pipeline calls them from one goroutine at a time.
type Session interface {
	Connect(ctx context.Context) Verdict
	Helo(ctx context.Context, helo string) Verdict
	Mail(ctx context.Context, tx *Tx) Verdict
	Rcpt(ctx context.Context, tx *Tx, rcpt string) Verdict
	// Data sees the message with our Received on top. A check of a
	// sequential entry may change m (headers, body, envelope); a parallel
	// or final one only reads it.
	Data(ctx context.Context, m *Message) Verdict
	// Reset ends the transaction (RSET, a new MAIL, after DATA).
	Reset(ctx context.Context)
	Close()
}

// Pass is a Session that has nothing to say at any stage; checks embed it
// and override the stages they decide at.
type Pass struct{}

func (Pass) Connect(context.Context) Verdict           { return Verdict{} }
func (Pass) Helo(context.Context, string) Verdict      { return Verdict{} }
func (Pass) Mail(context.Context, *Tx) Verdict         { return Verdict{} }
func (Pass) Rcpt(context.Context, *Tx, string) Verdict { return Verdict{} }
func (Pass) Data(context.Context, *Message) Verdict    { return Verdict{} }
func (Pass) Reset(context.Context)                     {}
func (Pass) Close()                                    {}

// Starter is a check with work to start once every check has accepted
// MAIL: a sender callout probes no sender another check refused.
type Starter interface {
	MailAccepted(ctx context.Context, tx *Tx) Verdict
}

// Waiter is a check that says at which stages it may wait (for a lookup
// or a peer): only those run under its Step's timeout, on a goroutine of
// their own; the others are called directly, which costs nothing. A check
// that is not a Waiter may wait at every stage.
type Waiter interface {
	Waits(Stage) bool
}

// Owner is a check that stamps headers no client may forge: before any
// check sees a message, every field it owns is marked deleted (kept in the
// -H file, as Exim does), and a field it owns that an earlier check of the
// message added (a milter's X-Spam-Status beside spamd's) is dropped too,
// so the delivered message carries one verdict: ours.
type Owner interface {
	Owns(name, value string) bool // value as written, folds kept (spool.Header.Value)
}

// LogKind says which log a LogLine goes to.
type LogKind int

const (
	MainLog   LogKind = iota
	RejectLog         // rejectlog and mainlog
	PanicLog          // paniclog and mainlog
)

// LogLine is a line a check wants logged besides its verdict.
type LogLine struct {
	Kind LogKind
	Text string
	// Host prefixes the client's H= ("H=(helo) [ip] "), as Exim's
	// lines about a client do.
	Host bool
}
