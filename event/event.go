// Package event carries what happens to mail, as data, from the packages
// that do it (gateway, filters, queue, spool, dnsclient, admin, submit) to
// the ones that watch: metrics, tracking and the console's live view.
//
// An event is emitted where the matching mainlog line is written, never
// re-read from log text, so the watchers see exactly what the logs say.
// Emit never blocks the mail path: a Sink that needs time (a database)
// queues the event and does its work in its own goroutine.
package event

import (
	"errors"
	"net/netip"
	"time"
)

// Kind says what happened.
type Kind uint8

const (
	// Connect: a client connected and was admitted (Conn, Client,
	// Listener). ConnRefused: it was refused before the greeting (the
	// connection limits, a DNS list at connect; Code, Reason).
	Connect Kind = iota + 1
	ConnRefused
	// Disconnect: the connection closed (Conn, Duration: its life).
	Disconnect
	// Check: one check or scanner answered at one stage (Check, Stage,
	// Action, ReasonCode, Score/Scored, Virus, List, Duration, Err;
	// Reason: the verdict's facts as logged, "spamd score=12.1
	// required=5.0", msgauth's "spf=pass dkim=pass:example.org
	// dmarc=pass"). Emitted for every answer, accepting ones too.
	Check
	// Refused: a command was refused with a 4xx/5xx (Stage, Code,
	// Enhanced, Text, ReasonCode, Check, List; Sender, and Recipient at
	// RCPT; at DATA the whole transaction's Recipients, the ID, and the
	// scanners' Score and Virus). Rejected attempts are what admins
	// search for. Stage "auth" is a failed AUTH (AuthUser: the login
	// tried); Stage "protocol" a reply go-smtp made itself (a syntax or
	// sequence error, SIZE= over the limit). Refusals the gateway makes
	// itself name no Check; their ReasonCode says why
	// ("message-too-big", "sender-syntax", "spool-space", ...).
	Refused
	// Accepted: a message was committed to the spool, after its 250 (ID,
	// Sender, Recipients, Size, Subject, MessageID, Action accept or tag,
	// Score/Scored, Source "smtp" | "local" | "bounce" | "digest" | "release").
	// A local submission's AuthUser is the login that submitted it; a
	// bounce's Size is not known (0). A release for one recipient that
	// queued a copy under a new ID has Parent: the quarantined message.
	Accepted
	// Quarantined and Discarded: accepted with a 250 but kept aside or
	// dropped (ID, the message's fields, Check, ReasonCode, Reason).
	Quarantined
	Discarded
	// Delivery: one recipient's attempt ended (ID, Recipient, Outcome,
	// Router, Transport, Host, Reply, Duration: the attempt; Delay: since
	// the message was received).
	Delivery
	// Bounce: a bounce or delay warning was made (ID of the new message,
	// Parent, Recipient: whom it goes to).
	Bounce
	// Completed: the message left the queue, every recipient done (ID).
	Completed
	// Admin: an administrator acted on a message (ID, Action: "freeze",
	// "thaw", "deliver", "remove", "release", "delete", "giveup",
	// "add-recipient", "edit-sender", "hold-release", "hold-drop"; User:
	// who; Reason: the one given, then what the action names: "<addr>",
	// "hold KEY"; Recipient: the one a "release" or "delete" was for,
	// when it was for one alone, as a digest link's is: User "digest
	// link"). From the CLI, the console and the digest's links alike.
	Admin
	// SpoolCommit: one group commit made its files durable (Batch:
	// messages in it, Duration: the sync).
	SpoolCommit
	// DNSLookup: one DNS query was answered (QType, Cached: from the
	// cache, Err, Duration).
	DNSLookup
	// Breaker: a check's circuit breaker opened or closed (Check, Open).
	Breaker
)

var kindNames = [...]string{
	Connect: "connect", ConnRefused: "conn-refused", Disconnect: "disconnect",
	Check: "check", Refused: "refused", Accepted: "accepted",
	Quarantined: "quarantined", Discarded: "discarded", Delivery: "delivery",
	Bounce: "bounce", Completed: "completed", Admin: "admin",
	SpoolCommit: "spool-commit", DNSLookup: "dns-lookup", Breaker: "breaker",
}

// String is the kind's name as tracking stores it ("delivery").
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// Sources of an Accepted event: mail received from a client (SMTP, the
// milter server's MTA, local submission), and mail mxgate made or moved
// itself, which is not received mail.
const (
	SourceSMTP    = "smtp"
	SourceMilter  = "milter"
	SourceLocal   = "local"
	SourceBounce  = "bounce"
	SourceDigest  = "digest"
	SourceRelease = "release"
)

// Received reports whether an Accepted event is mail a client sent,
// not a bounce, a digest or a release from the quarantine.
func (e *Event) Received() bool {
	switch e.Source {
	case SourceBounce, SourceDigest, SourceRelease:
		return false
	}
	return true
}

// Delivery outcomes, as Exim's log flags say them.
const (
	Delivered = "delivered" // =>, ->
	Deferred  = "deferred"  // ==
	Failed    = "failed"    // **
	Blackhole = "blackhole" // => :blackhole: (discarded, over quota policy)
)

// Event is one thing that happened. Which fields are set depends on Kind
// (see the constants); the rest are zero.
type Event struct {
	Kind Kind
	Time time.Time

	// Conn names the SMTP connection ("" for local submission and the
	// queue); Txn counts its transactions from 1, so the events of one
	// attempt, refused or accepted, can be put together.
	Conn string
	Txn  int
	// ID is the spool ID ("" before DATA); Parent a bounce's original,
	// or the quarantined message a released copy was made from.
	ID, Parent string

	Client   netip.Addr
	HostName string // the client's forward-confirmed PTR name, if any
	Helo     string
	Listener string // "smtp", "smtps", "submission"
	AuthUser string // the login, after AUTH

	Sender     string   // "" is <>
	Recipient  string   // the one recipient an event is about
	Recipients []string // a transaction's or message's
	Size       int64
	Subject    string
	MessageID  string // the Message-ID field
	Source     string // of Accepted

	Stage      string // "connect", "helo", "mail", "rcpt", "data"
	Check      string // "rbl", "spamd", ...
	Action     string // a verdict's action ("reject", "tag", ...), or an admin's
	Code       int
	Enhanced   string // "5.7.1"
	Text       string // the reply text sent
	ReasonCode string // filters.Verdict.ReasonCode
	Reason     string // a human reason: quarantine, admin action
	Score      float64
	Scored     bool   // Score is meaningful (spamd answered)
	Virus      string // the signature a virus scanner named
	List       string // the DNS list that decided

	Outcome   string // Delivered, Deferred, Failed, Blackhole
	Router    string
	Transport string
	Host      string // the delivery's peer: "mx.example [192.0.2.1]:25"
	Reply     string // the peer's reply or the error

	User   string // of Admin
	Batch  int    // of SpoolCommit
	QType  string // of DNSLookup: "A", "TXT", ...
	Cached bool
	Open   bool  // of Breaker
	Err    error // a check's or lookup's failure

	Duration time.Duration
	Delay    time.Duration // of Delivery: since the message was received
}

// Sink receives events. Event is called from the goroutine that emits it,
// on the mail path: it must return at once and must not keep e after it
// returns (copy what it needs).
type Sink interface {
	Event(e *Event)
}

// Bus hands every event to its sinks. A nil *Bus emits nothing, so
// packages and tests that watch nothing pass nil.
type Bus struct {
	sinks []Sink
	now   func() time.Time
}

// NewBus returns a bus feeding sinks in order.
func NewBus(sinks ...Sink) *Bus {
	return &Bus{sinks: sinks, now: time.Now}
}

// Emit stamps e's Time if unset and gives it to every sink.
func (b *Bus) Emit(e Event) {
	if b == nil || len(b.sinks) == 0 {
		return
	}
	if e.Time.IsZero() {
		e.Time = b.now()
	}
	for _, s := range b.sinks {
		s.Event(&e)
	}
}

// Close closes every sink that holds something open (a database sink
// writes what it has queued first), after the last Emit. A nil bus has
// nothing to close.
func (b *Bus) Close() error {
	if b == nil {
		return nil
	}
	var errs []error
	for _, s := range b.sinks {
		if c, ok := s.(interface{ Close() error }); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Enabled reports whether anything listens, so an emitter can skip
// building an event nobody reads.
func (b *Bus) Enabled() bool { return b != nil && len(b.sinks) > 0 }

// SinkFunc adapts a function to a Sink.
type SinkFunc func(e *Event)

// Event calls f(e).
func (f SinkFunc) Event(e *Event) { f(e) }
