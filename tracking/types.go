package tracking

import "time"

// Verdicts, one per attempt (a transaction, refused or accepted): its
// final state.
const (
	Accepted    = "accepted"
	Rejected    = "rejected"
	Tempfailed  = "tempfailed"
	Quarantined = "quarantined"
	Discarded   = "discarded"
	Delivered   = "delivered"
	Deferred    = "deferred"
	Bounced     = "bounced"
	Released    = "released"
	Deleted     = "deleted"
	Removed     = "removed"
)

// Verdicts lists every verdict, for validation and reports.
var Verdicts = []string{Accepted, Rejected, Tempfailed, Quarantined, Discarded, Delivered, Deferred, Bounced, Released, Deleted, Removed}

// Recipient statuses.
const (
	RcptAccepted  = "accepted"
	RcptRejected  = "rejected"
	RcptDelivered = "delivered"
	RcptDeferred  = "deferred"
	RcptFailed    = "failed"
)

// Message is one attempt: a transaction, refused or accepted, and what
// became of it.
type Message struct {
	Key        int64
	ID         string
	Time       time.Time
	Node       string
	Client     string
	HostName   string
	Helo       string
	AuthUser   string
	Sender     string
	Recipients []Recipient
	Size       int64
	Subject    string
	MessageID  string
	Verdict    string
	Reason     string // the reply text, or why, that decided
	ReasonCode string
	Check      string
	List       string
	Score      float64
	Scored     bool
	Virus      string
}

// Recipient is one recipient of an attempt; Status is accepted, rejected,
// delivered, deferred or failed.
type Recipient struct{ Address, Status, Reason string }

// Step is one line of a message's timeline.
type Step struct {
	Time time.Time
	Kind string
	Text string
}
