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
	Key        int64       `json:"key"`
	ID         string      `json:"id"`
	Time       time.Time   `json:"time"`
	Node       string      `json:"node"`
	Client     string      `json:"client"`
	HostName   string      `json:"host_name"`
	Helo       string      `json:"helo"`
	AuthUser   string      `json:"auth_user"`
	Sender     string      `json:"sender"`
	Recipients []Recipient `json:"recipients"`
	Size       int64       `json:"size"`
	Subject    string      `json:"subject"`
	MessageID  string      `json:"message_id"`
	Verdict    string      `json:"verdict"`
	Reason     string      `json:"reason"` // the reply text, or why, that decided
	ReasonCode string      `json:"reason_code"`
	Check      string      `json:"check"`
	List       string      `json:"list"`
	Score      float64     `json:"score"`
	Scored     bool        `json:"scored"`
	Virus      string      `json:"virus"`
}

// Recipient is one recipient of an attempt; Status is accepted, rejected,
// delivered, deferred or failed.
type Recipient struct {
	Address string `json:"address"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
}

// Step is one line of a message's timeline.
type Step struct {
	Time time.Time `json:"time"`
	Kind string    `json:"kind"` // the event's kind: connect, check, refused, accepted, delivery, admin, ...
	Text string    `json:"text"`
}
