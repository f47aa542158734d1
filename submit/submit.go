// Package submit owns local submission, mxgate's sendmail interface (-bm,
// -t): it reads a message from a local program, finds its recipients (the
// command line, or the header with -t), completes its header the way Exim
// does (Received:, and Date:, Message-ID:, From: when missing), holds each
// recipient to the caller's Accept (Routable: no address trick, and a
// route), and commits the message to the spool and the mainlog as an
// arrival with protocol "local" for the recipients accepted. The ones
// refused are reported to the caller and, in a bounce, to the sender, as
// sendmail does. Delivering is the caller's business (the queue runner).
package submit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"net/netip"
	"slices"
	"strings"
	"time"

	"mxgate/address"
	"mxgate/config"
	"mxgate/dsn"
	"mxgate/event"
	"mxgate/header"
	"mxgate/mainlog"
	"mxgate/route"
	"mxgate/spool"
)

// ErrNoRecipients: Exim's "A message that has no recipients cannot be
// delivered".
var ErrNoRecipients = errors.New("no recipients")

// Rejection is a recipient the message was not queued for.
type Rejection struct {
	// Addr is the address as qualified, or as written when it does not
	// parse.
	Addr    string
	Refusal address.Refusal // why: Log in words, Enhanced the status
}

// String is the line sendmail prints on stderr for r (without the
// program's name).
func (r Rejection) String() string {
	return fmt.Sprintf("<%s>: recipient address rejected: %s", r.Addr, r.Refusal.Log)
}

// RejectedError is Submit's error when every recipient was rejected:
// nothing was queued and no bounce sent (the caller hears of it). It is
// ErrNoRecipients.
type RejectedError struct{ Rejected []Rejection }

func (e *RejectedError) Error() string { return "no valid recipients: message not queued" }

func (e *RejectedError) Unwrap() error { return ErrNoRecipients }

// AcceptFunc decides whether the message can be queued for a recipient,
// an address parsed and qualified as the envelope will hold it: nil, or
// why not. A recipient it cannot decide on now should be accepted: the
// queue retries, a submission cannot.
type AcceptFunc func(rcpt address.Address) *address.Refusal

// Routable is the Accept of local submission: a local program may send to
// any address r has a route for, as Exim's and Postfix's sendmail accept
// any domain (a web application's mail() writes to the world). It is
// trusted as a client of relay.trusted_networks is, and no more: an
// address trick (percent hack, bang path, source route, address literal,
// restricted characters) is refused as at RCPT, and an address the router
// cannot deliver (outbound "none", a Maildir store without a Maildir for
// it) with the RCPT check's own refusal, rather than queued to bounce.
// What the router cannot decide now (its 4xx) is accepted: the queue
// retries, a submission cannot.
func Routable(r *route.Router) AcceptFunc {
	return func(a address.Address) *address.Refusal {
		if ref := address.Everyone.Allow(netip.IPv4Unspecified(), a); ref != nil {
			return ref
		}
		if ref := r.Refusal(a); ref != nil && ref.Code/100 == 5 {
			return ref
		}
		return nil
	}
}

// checkSpace refuses a message of size bytes (0: not known yet) that the
// spool cannot take and keep its reserve, as Exim's receive_check_fs
// refuses a local message ("insufficient disk space"), with a rejectlog
// line for the admin. The error wraps the *spool.Shortage.
func checkSpace(o Options, size int64) error {
	short := o.Spool.CheckSpace(size)
	if short == nil {
		return nil
	}
	err := fmt.Errorf("insufficient disk space (%w): message not queued", short)
	if o.Log != nil {
		o.Log.Reject("", fmt.Sprintf("U=%s temporarily rejected local message: %v", safeUser(o.User), err))
	}
	return err
}

// Options describe one submission.
type Options struct {
	Config *config.Config // hostname (the domain of unqualified addresses, Mailer-Daemon@), size limit
	Spool  *spool.Spool
	Log    *mainlog.Logger // nil logs nothing
	// Accept decides each recipient (required): Routable.
	Accept AcceptFunc

	// User is the invoking login name: the default sender User@hostname,
	// U= in the mainlog, "from User" in Received:.
	User string
	// Name is the display name of a From: that has to be added (-F, else
	// the user's full name); "" adds none.
	Name string
	// Sender is the envelope sender (-f); "" means User@hostname and "<>"
	// the null sender.
	Sender string
	// Recipients are the command-line addresses. With ExtractRecipients
	// (-t) they are removed from those found in the header instead
	// (Exim's extract_addresses_remove_arguments).
	Recipients        []string
	ExtractRecipients bool
	// DotEnds: a line holding only "." ends the message (sendmail without
	// -i or -oi).
	DotEnds bool
	// Bus gets the Accepted event (Source "local", AuthUser the invoking
	// login) of the message committed, and a Delivery (failed) per
	// rejected recipient and their bounce's Accepted and Bounce; nil
	// emits nothing.
	Bus *event.Bus
}

// Message is what was committed.
type Message struct {
	ID         spool.ID
	Sender     string // "" = null sender
	Recipients []string
	Size       int64
	// Rejected are the recipients it was not queued for, each once.
	Rejected []Rejection
	// Bounce is the bounce about Rejected committed for the sender; ""
	// when none was (nothing rejected, or the null sender).
	Bounce spool.ID
}

// Submit reads the message from r and commits it to the spool for the
// recipients that are well formed and accepted; each other one is logged
// ("ID ** ADDR: why") and, unless the sender is <>, named in a bounce
// committed beside it (dsn.Commit). Nothing is left in the spool when it
// fails: no recipients (ErrNoRecipients; a *RejectedError when there were
// some but every one was rejected), an invalid sender, a malformed -t
// header or command-line address removed by -t, a message over
// smtp.max_message_size, a spool short of space (spool.min_free_space,
// min_free_inodes: the error wraps a *spool.Shortage), or an error
// reading r. When the message is
// committed but its bounce cannot be, Submit returns both the Message and
// the error.
func Submit(ctx context.Context, o Options, r io.Reader) (*Message, error) {
	cfg := o.Config
	host := cfg.Hostname
	sender, err := envelopeSender(o.Sender, o.User, host)
	if err != nil {
		return nil, err
	}

	in := &input{br: bufio.NewReaderSize(r, 64<<10), dotEnds: o.DotEnds}
	headers, first, err := in.readHeader()
	if err != nil {
		return nil, err
	}
	rcpts, bad, err := recipients(o, headers)
	if err != nil {
		return nil, err
	}
	var envRcpts []string
	var rejected []Rejection
	reject := func(addr string, ref address.Refusal) {
		if !slices.ContainsFunc(rejected, func(r Rejection) bool { return r.Addr == addr }) {
			rejected = append(rejected, Rejection{Addr: addr, Refusal: ref})
		}
	}
	for _, b := range bad {
		reject(b, *address.SyntaxRefusal(fmt.Errorf("%w: %q: a name without <address>", address.ErrSyntax, b)))
	}
	for _, raw := range rcpts {
		a, err := qualify(raw, host)
		if err != nil {
			reject(raw, *address.SyntaxRefusal(err))
			continue
		}
		if ref := o.Accept(a); ref != nil {
			reject(a.String(), *ref)
			continue
		}
		if s := a.String(); !slices.Contains(envRcpts, s) {
			envRcpts = append(envRcpts, s)
		}
	}
	if len(envRcpts) == 0 {
		if len(rejected) > 0 {
			return nil, &RejectedError{Rejected: rejected}
		}
		return nil, ErrNoRecipients
	}

	if err := checkSpace(o, 0); err != nil {
		return nil, err
	}
	w, err := o.Spool.Create()
	if err != nil {
		return nil, err
	}
	defer w.Abort() // after Commit it does nothing
	id := w.ID()
	now := time.Now()
	hdrs := completeHeader(o, headers, id, sender, envRcpts, now)

	env := &spool.Envelope{
		ID:               id,
		Sender:           sender,
		Recipients:       envRcpts,
		Received:         now,
		ReceivedProtocol: "local",
		DeliverFirstTime: true,
		Headers:          hdrs,
	}
	limit := int64(cfg.SMTP.MaxMessageSize)
	size := env.HeaderSize() + 1
	for line := first; ; {
		if line == nil {
			if line, err = in.line(64 << 10); err != nil {
				return nil, err
			}
			if line == nil {
				break
			}
		}
		if size += int64(len(line)); size > limit {
			return nil, fmt.Errorf("message too big: more than smtp.max_message_size %d bytes", limit)
		}
		if _, err := w.Write(line); err != nil {
			return nil, err
		}
		line = nil
	}
	// Again with the size, as the SMTP side asks with SIZE=.
	if err := checkSpace(o, size); err != nil {
		return nil, err
	}
	arrival := fmt.Sprintf("U=%s P=local S=%d", safeUser(o.User), size)
	if mid := header.MessageID(hdrs); mid != "" {
		arrival += " id=" + mid
	}
	if err := w.Receive(ctx, env, arrival, o.Log); err != nil {
		return nil, err
	}
	m := &Message{ID: id, Sender: sender, Recipients: envRcpts, Size: size, Rejected: rejected}
	if o.Bus.Enabled() {
		o.Bus.Emit(event.Event{Kind: event.Accepted, ID: string(id), Sender: sender, Recipients: envRcpts, Size: size,
			Subject: header.Subject(hdrs), MessageID: header.MessageID(hdrs), AuthUser: o.User, Action: "accept", Source: event.SourceLocal})
	}
	if len(rejected) == 0 {
		return m, nil
	}
	failed := make([]dsn.Recipient, len(rejected))
	for i, rj := range rejected {
		line := fmt.Sprintf("** %s: %s", rj.Addr, rj.Refusal.Log)
		o.Log.Main(string(id), line)
		if err := o.Spool.Msglog(id, line); err != nil {
			o.Log.Panic(fmt.Sprintf("%s msglog write failed: %v", id, err))
		}
		failed[i] = dsn.Recipient{Addr: rj.Addr, Err: rj.Refusal.Log, Status: status(rj.Refusal)}
		o.Bus.Emit(event.Event{Kind: event.Delivery, ID: string(id), Sender: sender, Recipient: rj.Addr, Outcome: event.Failed, Reply: rj.Refusal.Log})
	}
	if sender == "" {
		return m, nil // a bounce is never sent to <>
	}
	rep := &dsn.Report{
		Hostname:   host,
		ID:         id,
		Sender:     sender,
		Arrival:    now,
		Headers:    hdrs,
		Recipients: failed,
		Date:       now,
	}
	m.Bounce, err = dsn.Commit(ctx, o.Spool, o.Log, dsn.Failure, rep)
	if err != nil {
		o.Log.Panic(fmt.Sprintf("%s error message to <%s> not written: %v", id, sender, err))
		return m, fmt.Errorf("message %s queued, but the error message to <%s> about its rejected recipients was not: %w", id, sender, err)
	}
	o.Bus.Emit(event.Event{Kind: event.Accepted, ID: string(m.Bounce), Recipients: []string{sender},
		MessageID: rep.MessageID, Action: "accept", Source: event.SourceBounce})
	o.Bus.Emit(event.Event{Kind: event.Bounce, ID: string(m.Bounce), Parent: string(id), Recipient: sender})
	return m, nil
}

// status is a refusal's RFC 3463 status for a bounce, when it is a
// permanent one; "" lets dsn choose.
func status(ref address.Refusal) string {
	if ref.Enhanced[0] != 5 {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", ref.Enhanced[0], ref.Enhanced[1], ref.Enhanced[2])
}

// envelopeSender is -f's address, qualified; or user@host by default.
func envelopeSender(f, user, host string) (string, error) {
	switch f = strings.TrimSpace(f); f {
	case "":
		f = user
	case "<>":
		return "", nil
	}
	f = strings.TrimSuffix(strings.TrimPrefix(f, "<"), ">")
	a, err := qualify(f, host)
	if err != nil {
		return "", fmt.Errorf("invalid sender %q: %w", f, err)
	}
	return a.String(), nil
}

// qualify parses an address as a header or the command line gives it:
// a quoted local part is unquoted, and one without a domain gets host.
func qualify(s, host string) (address.Address, error) {
	local, domain := s, host
	if i := strings.LastIndexByte(s, '@'); i >= 0 && !strings.HasSuffix(s, `"`) {
		local, domain = s[:i], s[i+1:]
	}
	if len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"' {
		var b strings.Builder
		for i := 1; i < len(local)-1; i++ {
			if local[i] == '\\' && i+1 < len(local)-1 {
				i++
			}
			b.WriteByte(local[i])
		}
		local = b.String()
	}
	return address.Parse(local + "@" + domain)
}

// recipients are the addresses to deliver to, as written: the command
// line's; with -t those of the header minus the command line's, and, in
// bad, the header's elements that are no address.
func recipients(o Options, headers []spool.Header) (rcpts, bad []string, err error) {
	if !o.ExtractRecipients {
		return o.Recipients, nil, nil
	}
	found, bad := extract(headers)
	host := o.Config.Hostname
	argv := map[string]bool{}
	for _, r := range o.Recipients {
		if a, err := qualify(r, host); err == nil {
			argv[a.String()] = true
		} else {
			return nil, nil, fmt.Errorf("invalid recipient %q: %w", r, err)
		}
	}
	var out []string
	for _, r := range found {
		if a, err := qualify(r, host); err == nil && argv[a.String()] {
			continue
		}
		out = append(out, r)
	}
	return out, bad, nil
}

// extract returns the addresses of To:, Cc: and Bcc:, or of Resent-To:,
// Resent-Cc: and Resent-Bcc: when the message has any Resent- field (it is
// being resent, so the original recipients have had it), and marks every
// Bcc: and Resent-Bcc: deleted, as Exim does with -t. bad are the
// elements that are no address.
func extract(headers []spool.Header) (out, bad []string) {
	prefix := ""
	for _, h := range headers {
		if strings.HasPrefix(strings.ToLower(h.Text), "resent-") {
			prefix = "resent-"
			break
		}
	}
	for i, h := range headers {
		name := strings.ToLower(h.Name())
		switch name {
		case prefix + "to", prefix + "cc", prefix + "bcc":
			addrs, b := addressList(h.Value())
			out, bad = append(out, addrs...), append(bad, b...)
		}
		if name == "bcc" || name == "resent-bcc" {
			headers[i].Type = '*'
		}
	}
	return out, bad
}

// completeHeader puts Received: on top and adds what RFC 5322 requires
// and the message lacks (Date:, From:) and a Message-ID:, at the end of
// the header as Exim does.
func completeHeader(o Options, headers []spool.Header, id spool.ID, sender string, rcpts []string, now time.Time) []spool.Header {
	host := o.Config.Hostname
	has := func(name string) bool {
		return slices.ContainsFunc(headers, func(h spool.Header) bool {
			return strings.EqualFold(h.Name(), name)
		})
	}
	var b strings.Builder
	// A quoted local part may hold what would end the comment.
	envFrom := strings.NewReplacer(`\`, `\\`, "(", `\(`, ")", `\)`).Replace(sender)
	fmt.Fprintf(&b, "Received: from %s by %s with local (mxgate)\n\t(envelope-from <%s>)\n\tid %s", safeUser(o.User), host, envFrom, id)
	if len(rcpts) == 1 {
		fmt.Fprintf(&b, "\n\tfor <%s>", rcpts[0])
	}
	fmt.Fprintf(&b, "; %s\n", now.Format(time.RFC1123Z))
	out := append([]spool.Header{{Type: 'P', Text: b.String()}}, headers...)
	if !has("Date") {
		out = append(out, spool.Header{Type: ' ', Text: "Date: " + now.Format(time.RFC1123Z) + "\n"})
	}
	if !has("Message-ID") {
		out = append(out, spool.Header{Type: 'I', Text: fmt.Sprintf("Message-ID: <E%s@%s>\n", id, host)})
	}
	if !has("From") {
		from := sender
		if from == "" {
			from = o.User + "@" + host
		}
		text := from
		if o.Name != "" {
			if a, err := address.Parse(from); err == nil {
				text = (&mail.Address{Name: o.Name, Address: a.Local + "@" + a.Domain}).String()
			}
		}
		out = append(out, spool.Header{Type: 'F', Text: "From: " + text + "\n"})
	}
	return out
}

// safeUser keeps a login name from breaking the Received: header or the
// mainlog's fields.
func safeUser(u string) string {
	b := []byte(u)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._-$", c) >= 0) {
			b[i] = '?'
		}
	}
	return string(b)
}
