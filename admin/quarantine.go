package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"mxgate/event"
	"mxgate/header"
	"mxgate/mainlog"
	"mxgate/spool"
)

// quarantineError says what went wrong with one quarantined message in an
// administrator's words.
func quarantineError(id spool.ID, err error) error {
	switch {
	case errors.Is(err, spool.ErrNotFound):
		return &notQuarantined{text: fmt.Sprintf("message %s is not in quarantine", id)}
	case errors.Is(err, spool.ErrLocked):
		return &Refusal{ID: id, What: "is locked"}
	}
	return fmt.Errorf("message %s: %w", id, err)
}

// ErrNotQuarantined is what the quarantine operations' error is when the
// message (or, for one recipient, the message for that recipient) is not
// in quarantine: released or deleted already, or never there.
var ErrNotQuarantined = errors.New("not in quarantine")

// notQuarantined says which message is not in quarantine and is
// ErrNotQuarantined.
type notQuarantined struct{ text string }

func (e *notQuarantined) Error() string { return e.text }
func (e *notQuarantined) Unwrap() error { return ErrNotQuarantined }

// QuarantineList writes one line per quarantined message, oldest first:
// age and size as -bp shows them, the ID, the sender and the reason
// (`mxgate quarantine list`).
func (q *Queue) QuarantineList(w io.Writer) error {
	list, err := q.Spool.QuarantineList()
	if err != nil {
		return err
	}
	now := q.now()
	var b []byte
	for _, m := range list {
		env := m.Envelope
		b = fmt.Appendf(b, "%s %s %s <%s> %s\n", FormatAge(now.Sub(env.Received)), FormatSize(m.Size), env.ID, env.Sender, m.Reason)
	}
	_, err = w.Write(b)
	return err
}

// QuarantineShow writes a quarantined message's -H file and then its -D
// file, as -Mvh and -Mvb would for a queued one (`mxgate quarantine show`).
func (q *Queue) QuarantineShow(w io.Writer, arg string) error {
	id, err := parseID(arg)
	if err != nil {
		return err
	}
	hdr, err := q.Spool.QuarantineHeaderFile(id)
	if err != nil {
		return quarantineError(id, err)
	}
	body, err := q.Spool.QuarantineOpenBody(id)
	if err != nil {
		return quarantineError(id, err)
	}
	defer body.Close()
	if _, err := fmt.Fprintf(w, "%s%s-D\n", hdr, id); err != nil {
		return err
	}
	if _, err := io.Copy(w, body); err != nil {
		return fmt.Errorf("message %s: %w", id, err)
	}
	return nil
}

// QuarantineRelease moves a quarantined message into the queue, logs who
// did it and the message's arrival ("<=", see releasedArrival), and
// returns its ID and the line to print; the caller makes the delivery
// attempt (`mxgate quarantine release`). A message another process
// handles is a Refusal.
func (q *Queue) QuarantineRelease(arg string) (spool.ID, string, error) {
	id, err := parseID(arg)
	if err != nil {
		return "", "", err
	}
	env, err := q.Spool.QuarantineRelease(id)
	if err != nil {
		return "", "", quarantineError(id, err)
	}
	q.Log.Main(string(id), "released from quarantine by "+q.User+q.because())
	q.emit(id, "release", "")
	q.arrived(env, "")
	return id, fmt.Sprintf("Message %s has been released from quarantine", id), nil
}

// because is the reason the admin gave, as the end of their action's
// mainlog line: one line says who and why.
func (q *Queue) because() string {
	if q.Reason == "" {
		return ""
	}
	return " because: " + q.Reason
}

// QuarantineDelete removes a quarantined message for good, logs who did
// it, and returns the line to print (`mxgate quarantine delete`).
func (q *Queue) QuarantineDelete(arg string) (string, error) {
	id, err := parseID(arg)
	if err != nil {
		return "", err
	}
	if err := q.Spool.QuarantineDelete(id); err != nil {
		return "", quarantineError(id, err)
	}
	q.Log.Main(string(id), "deleted from quarantine by "+q.User+q.because())
	q.emit(id, "delete", "")
	return fmt.Sprintf("Message %s has been deleted from quarantine", id), nil
}

// QuarantineReleaseFor queues a quarantined message for one recipient
// alone (spool.QuarantineReleaseFor: a copy under a new ID while others
// are pending, else the message itself), logs "released from quarantine
// for RCPT by USER" on the quarantined message, naming the copy, and the
// queued message's "<=" line; it returns the queued ID for the caller's
// delivery attempt and the line to print. A recipient not pending is
// "not in quarantine".
func (q *Queue) QuarantineReleaseFor(ctx context.Context, id spool.ID, rcpt string) (spool.ID, string, error) {
	env, err := q.Spool.QuarantineReleaseFor(ctx, id, rcpt)
	if err != nil {
		return "", "", quarantineRcptError(id, rcpt, err)
	}
	text := "released from quarantine for " + rcpt + " by " + q.User
	if env.ID != id {
		text += ": queued as " + string(env.ID)
	}
	q.Log.Main(string(id), text+q.because())
	q.emitFor(id, "release", rcpt)
	parent := ""
	if env.ID != id {
		parent = string(id)
	}
	q.arrived(env, parent)
	return env.ID, fmt.Sprintf("Message %s has been released from quarantine for %s", id, rcpt), nil
}

// QuarantineDeleteFor removes one recipient of a quarantined message,
// logs "deleted from quarantine for RCPT by USER", and returns the line
// to print; the message leaves the quarantine with its last recipient.
func (q *Queue) QuarantineDeleteFor(id spool.ID, rcpt string) (string, error) {
	if _, err := q.Spool.QuarantineDeleteFor(id, rcpt); err != nil {
		return "", quarantineRcptError(id, rcpt, err)
	}
	q.Log.Main(string(id), "deleted from quarantine for "+rcpt+" by "+q.User+q.because())
	q.emitFor(id, "delete", rcpt)
	return fmt.Sprintf("Message %s has been deleted from quarantine for %s", id, rcpt), nil
}

func quarantineRcptError(id spool.ID, rcpt string, err error) error {
	if errors.Is(err, spool.ErrNotFound) {
		return &notQuarantined{text: fmt.Sprintf("message %s is not in quarantine for %s", id, rcpt)}
	}
	return quarantineError(id, err)
}

// emitFor is the Admin event of an action for one recipient.
func (q *Queue) emitFor(id spool.ID, action, rcpt string) {
	q.Bus.Emit(event.Event{Kind: event.Admin, ID: string(id), Action: action, User: q.User, Recipient: rcpt, Reason: q.Reason})
}

// arrived logs a released message's "<=" line (and msglog line) and
// emits its Accepted event, Source "release"; parent is the quarantined
// message when env is a copy of it under a new ID.
func (q *Queue) arrived(env *spool.Envelope, parent string) {
	arrival := releasedArrival(env)
	q.Spool.LogArrival(env, arrival, q.Log)
	if q.Bus.Enabled() {
		q.Bus.Emit(event.Event{Kind: event.Accepted, ID: string(env.ID), Sender: env.Sender, Recipients: env.Pending(),
			Size: env.HeaderSize() + 1 + env.BodySize, Subject: header.Subject(env.Headers), MessageID: header.MessageID(env.Headers),
			Action: "accept", Source: event.SourceRelease, Parent: parent})
	}
}

// releasedArrival is the rest of a released message's "<=" line after
// the sender: the arrival as the gateway logged it, rebuilt from the -H
// (H=, P=, S=, id=; the client's DNS name and TLS are not kept there, so
// H= names it by HELO and IP as Exim does a client without a name), then
// "(released from quarantine)". eximstats counts it as received, so its
// Received and Delivered add up; nothing it reads follows S=.
func releasedArrival(env *spool.Envelope) string {
	var b strings.Builder
	if ap, err := netip.ParseAddrPort(env.HostAddress); err == nil {
		fmt.Fprintf(&b, "H=%s:%d ", mainlog.Host("", env.HeloName, ap.Addr()), ap.Port())
	}
	proto := env.ReceivedProtocol
	if proto == "" {
		proto = "local"
	}
	fmt.Fprintf(&b, "P=%s S=%d", proto, env.HeaderSize()+1+env.BodySize)
	if mid := header.MessageID(env.Headers); mid != "" {
		b.WriteString(" id=" + mid)
	}
	b.WriteString(" (released from quarantine)")
	return b.String()
}
