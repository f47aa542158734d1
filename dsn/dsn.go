// Package dsn builds the delivery status notifications mxgate sends to a
// message's sender: the bounce ("Mail delivery failed: returning message to
// sender") and the delay warning ("Warning: message ID delayed ..."), as
// RFC 3464 multipart/report messages worded and laid out as Exim writes
// them, in the spool's form (headers as spool.Header, LF line endings), and
// commits them to the spool as new messages from the null sender (Commit),
// the one way the queue and local submission send them.
package dsn

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"mxgate/spool"

	"mxgate/smtptext"
)

// Recipient is one address a report is about.
type Recipient struct {
	Addr string
	// Host is the remote MTA that answered, "name [ip]" as deliver
	// reports it; "" when none did.
	Host string
	// Reply is the remote reply ("550 5.1.1 no such user"): the
	// Diagnostic-Code. "" when the remote said nothing.
	Reply string
	// Err is what went wrong, in words for the sender: a notification
	// goes to an address outside, so it never carries what only the
	// admin may see (paths, internal addresses, Go error text); the
	// mainlog keeps that.
	Err string
	// Status is the RFC 3463 status to report; "" takes the enhanced
	// code of Reply or Err, else 5.0.0 (failure) / 4.0.0 (delay).
	Status string
}

// Report is what a notification is about.
type Report struct {
	Hostname   string         // Mailer-Daemon@Hostname, Reporting-MTA, Message-Id domain
	ID         spool.ID       // the original message's queue ID
	Sender     string         // the original envelope sender: the notification's To; never ""
	Arrival    time.Time      // when the original was received
	Headers    []spool.Header // the original's headers; deleted ('*') ones are left out
	Recipients []Recipient    // at least one
	// MessageID is the local part of the notification's Message-Id.
	MessageID string
	Date      time.Time // the notification's Date
	// Boundary separates the MIME parts; "" makes a random one.
	Boundary string
	// Delay (warnings only) is the delay_warning time, and Queued how
	// long the message has been on the queue: the subject and the text
	// name the multiple of Delay passed, in minutes or hours as Exim does.
	Delay, Queued time.Duration
}

// Message is a built notification.
type Message struct {
	Headers []spool.Header
	Body    []byte // LF line endings
}

// Bytes is the whole message: headers, blank line, body.
func (m *Message) Bytes() []byte {
	var b bytes.Buffer
	for _, h := range m.Headers {
		b.WriteString(h.Text)
	}
	b.WriteByte('\n')
	b.Write(m.Body)
	return b.Bytes()
}

// Failure builds the bounce for r's recipients, which failed for good.
func Failure(r *Report) (*Message, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	bound, err := r.boundary()
	if err != nil {
		return nil, err
	}
	var h []spool.Header
	// Exim starts a new X-Failed-Recipients header every 50 addresses so
	// that no header line grows without bound.
	for i := 0; i < len(r.Recipients); i += 50 {
		var addrs []string
		for _, rc := range r.Recipients[i:min(i+50, len(r.Recipients))] {
			addrs = append(addrs, printable(rc.Addr))
		}
		h = append(h, header("X-Failed-Recipients", strings.Join(addrs, ",\n  ")))
	}
	h = append(h, r.commonHeaders(bound, "Mail delivery failed: returning message to sender")...)

	var b strings.Builder
	fmt.Fprintf(&b, "--%s\nContent-type: text/plain; charset=us-ascii\n\n", bound)
	b.WriteString("This message was created automatically by mail delivery software.\n\n" +
		"A message that you sent could not be delivered to one or more of its\n" +
		"recipients. This is a permanent error. The following address(es) failed:\n\n")
	for _, rc := range r.Recipients {
		writeAddress(&b, rc, "")
	}
	b.WriteString("\n")
	r.writeStatus(&b, bound, "failed", '5')
	r.writeHeaders(&b, bound)
	return &Message{Headers: h, Body: []byte(b.String())}, nil
}

// delayText names the multiple of delay_warning the message has passed, as
// Exim does: whole hours from two hours on, else whole minutes; and, where
// Exim would write "0 minutes" (a delay_warning under a minute), whole
// seconds. The count is rounded down: the text says "after more than".
func delayText(every, queued time.Duration) string {
	shown := max(every, queued/every*every)
	// "more than 0 seconds" says nothing: a delay under a second (a
	// test's delay_warning) reads as one.
	n, unit := max(1, int(shown/time.Second)), "second"
	switch {
	case shown >= 120*time.Minute:
		n, unit = int(shown/time.Hour), "hour"
	case shown >= time.Minute:
		n, unit = int(shown/time.Minute), "minute"
	}
	if n != 1 {
		unit += "s"
	}
	return fmt.Sprintf("%d %s", n, unit)
}

// Delay builds the warning that r's recipients have not been delivered
// after r.Delay on the queue.
func Delay(r *Report) (*Message, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	if r.Delay <= 0 {
		return nil, fmt.Errorf("dsn: delay warning for %s without a delay", r.ID)
	}
	bound, err := r.boundary()
	if err != nil {
		return nil, err
	}
	delay := delayText(r.Delay, r.Queued)
	h := r.commonHeaders(bound, fmt.Sprintf("Warning: message %s delayed %s", r.ID, delay))

	var b strings.Builder
	fmt.Fprintf(&b, "--%s\nContent-type: text/plain; charset=us-ascii\n\n", bound)
	b.WriteString("This message was created automatically by mail delivery software.\n" +
		"A message that you sent has not yet been delivered to one or more of its\n" +
		"recipients after more than ")
	fmt.Fprintf(&b, "%s on the queue on %s.\n\nThe message identifier is:     %s\n", delay, r.Hostname, r.ID)
	for _, hd := range r.Headers {
		if hd.Type == '*' {
			continue
		}
		switch strings.ToLower(hd.Name()) {
		case "subject":
			fmt.Fprintf(&b, "The subject of the message is: %s\n", printableText(strings.TrimLeft(hd.Value(), " \t")))
		case "date":
			fmt.Fprintf(&b, "The date of the message is:    %s\n", printableText(strings.TrimLeft(hd.Value(), " \t")))
		}
	}
	b.WriteString("\n")
	if len(r.Recipients) == 1 {
		b.WriteString("The address to which the message has not yet been delivered is:\n\n")
	} else {
		b.WriteString("The addresses to which the message has not yet been delivered are:\n\n")
	}
	for _, rc := range r.Recipients {
		writeAddress(&b, rc, "Delay reason: ")
	}
	b.WriteString("\n" +
		"No action is required on your part. Delivery attempts will continue for\n" +
		"some time, and this warning may be repeated at intervals if the message\n" +
		"remains undelivered. Eventually the mail delivery software will give up,\n" +
		"and when that happens, the message will be returned to you.\n\n")
	r.writeStatus(&b, bound, "delayed", '4')
	r.writeHeaders(&b, bound)
	return &Message{Headers: h, Body: []byte(b.String())}, nil
}

func (r *Report) check() error {
	switch {
	case r.Hostname == "":
		return fmt.Errorf("dsn: report on %s without a host name", r.ID)
	case r.Sender == "":
		// The null sender gets no report: that is what stops loops.
		return fmt.Errorf("dsn: report on %s to the null sender", r.ID)
	case len(r.Recipients) == 0:
		return fmt.Errorf("dsn: report on %s about no recipient", r.ID)
	case r.MessageID == "":
		return fmt.Errorf("dsn: report on %s without a Message-Id", r.ID)
	case strings.ContainsAny(r.Hostname+r.Sender+r.MessageID+string(r.ID)+r.Boundary, "\r\n"):
		return fmt.Errorf("dsn: report on %s: line break in a header value", r.ID)
	}
	return nil
}

// boundary is r.Boundary or a fresh one in Exim's shape (time, tag,
// random); the random part keeps it out of the returned headers, which
// the original's sender chose.
func (r *Report) boundary() (string, error) {
	if r.Boundary != "" {
		return r.Boundary, nil
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", fmt.Errorf("dsn: MIME boundary for %s: %w", r.ID, err)
	}
	return fmt.Sprintf("%d-mxgate-%s", r.Date.Unix(), hex.EncodeToString(rnd[:])), nil
}

// commonHeaders are the headers of both kinds, in Exim's order.
func (r *Report) commonHeaders(bound, subject string) []spool.Header {
	return []spool.Header{
		header("Auto-Submitted", "auto-replied"),
		header("From", "Mail Delivery System <Mailer-Daemon@"+r.Hostname+">"),
		header("To", r.Sender),
		header("Content-Type", "multipart/report; report-type=delivery-status; boundary="+bound),
		header("MIME-Version", "1.0"),
		header("Subject", subject),
		header("Message-Id", "<"+r.MessageID+"@"+r.Hostname+">"),
		header("Date", r.Date.Format(time.RFC1123Z)),
	}
}

func header(name, value string) spool.Header {
	return spool.Header{Type: spool.HeaderType(name), Text: name + ": " + value + "\n"}
}

// writeStatus writes the message/delivery-status part (RFC 3464): the
// per-message fields, then one block per recipient.
func (r *Report) writeStatus(b *strings.Builder, bound, action string, class byte) {
	fmt.Fprintf(b, "--%s\nContent-type: message/delivery-status\n\n", bound)
	fmt.Fprintf(b, "Reporting-MTA: dns; %s\n", r.Hostname)
	if !r.Arrival.IsZero() {
		fmt.Fprintf(b, "Arrival-Date: %s\n", r.Arrival.Format(time.RFC1123Z))
	}
	for _, rc := range r.Recipients {
		fmt.Fprintf(b, "\nFinal-Recipient: rfc822; %s\nAction: %s\nStatus: %s\n", printable(rc.Addr), action, status(rc, class))
		if mta := remoteMTA(rc.Host); mta != "" {
			fmt.Fprintf(b, "Remote-MTA: dns; %s\n", mta)
		}
		if rc.Reply != "" {
			// RFC 3461 §4.3 continues a multi-line reply on lines that
			// start with a space.
			fmt.Fprintf(b, "Diagnostic-Code: smtp; %s\n", strings.ReplaceAll(printableText(rc.Reply), "\n", "\n "))
		}
	}
	b.WriteString("\n")
}

// writeHeaders writes the last part: the original's headers. Exim also
// returns the body up to bounce_return_size_limit (100K); mxgate returns
// the headers only (RFC 3462's text/rfc822-headers), which tells the
// sender which message it was without sending a large payload back, to
// an address that may be forged.
func (r *Report) writeHeaders(b *strings.Builder, bound string) {
	fmt.Fprintf(b, "--%s\nContent-type: text/rfc822-headers\n\n", bound)
	fmt.Fprintf(b, "Return-path: <%s>\n", r.Sender)
	for _, h := range r.Headers {
		if h.Type != '*' {
			b.WriteString(h.Text)
		}
	}
	fmt.Fprintf(b, "\n--%s--\n", bound)
}

// writeAddress writes one address of the text part as Exim's
// print_address_information and print_address_error do: the address,
// the host that answered (a network host: a socket path stays in the
// mainlog), then the error, broken after a ": " once a
// line is past 45 characters.
func writeAddress(b *strings.Builder, rc Recipient, prefix string) {
	fmt.Fprintf(b, "  %s\n", printable(rc.Addr))
	if remoteMTA(rc.Host) != "" {
		fmt.Fprintf(b, "    host %s\n", printable(rc.Host))
	}
	text := printableText(rc.Err)
	if text == "" {
		text = printableText(rc.Reply)
	}
	if text == "" {
		return
	}
	b.WriteString("    " + prefix)
	count := len(prefix)
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c == '\n' {
			b.WriteString("\n    ")
			count = 0
			continue
		}
		b.WriteByte(c)
		count++
		if c == ':' && i+1 < len(text) && text[i+1] == ' ' && count > 45 {
			b.WriteString("\n   ") // the space that follows makes the fourth
			count = 0
		}
	}
	b.WriteString("\n")
}

// status is the Status field: rc.Status, else the enhanced code of the
// remote reply or error text when it is of the right class, else X.0.0.
func status(rc Recipient, class byte) string {
	if rc.Status != "" {
		return rc.Status
	}
	for _, text := range []string{rc.Reply, rc.Err} {
		if s := EnhancedStatus(text); s != "" && s[0] == class {
			return s
		}
	}
	return string(class) + ".0.0"
}

// remoteMTA is the host name of deliver's "name [ip]" (the address when
// there is no name); "" for a host that is not a network peer (a socket
// path).
func remoteMTA(host string) string {
	name, rest, _ := strings.Cut(host, " [")
	if name == "" {
		name = strings.TrimSuffix(rest, "]")
	}
	if strings.HasPrefix(host, "[") {
		name = strings.Trim(host, "[]")
	}
	if name == "" || strings.ContainsAny(name, "/ \t") {
		return ""
	}
	return printable(name)
}

// printable keeps a one-line value to printable ASCII: remote text goes
// into a us-ascii part, and a stray CR or LF must not start a new field.
func printable(s string) string { return smtptext.CleanMax(s, 0) }

// printableText is printable for text that may span lines: LF is kept, a
// CR before it dropped.
func printableText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = printable(l)
	}
	return strings.Join(lines, "\n")
}

// WantsDelayWarning is Exim's default delay_warning_condition: no warnings
// for mailing-list traffic (a List-Id, List-Post or List-Subscribe header),
// Precedence bulk, list or junk, or mail that is itself automatic
// (Auto-Submitted auto-generated or auto-replied).
func WantsDelayWarning(headers []spool.Header) bool {
	for _, h := range headers {
		if h.Type == '*' {
			continue
		}
		value := strings.ToLower(h.Value())
		switch strings.ToLower(h.Name()) {
		case "list-id", "list-post", "list-subscribe":
			return false
		case "precedence":
			if strings.Contains(value, "bulk") || strings.Contains(value, "list") || strings.Contains(value, "junk") {
				return false
			}
		case "auto-submitted":
			if strings.Contains(value, "auto-generated") || strings.Contains(value, "auto-replied") {
				return false
			}
		}
	}
	return true
}
