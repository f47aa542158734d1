package digest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"html/template"
	"mime"
	"mime/quotedprintable"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"mxgate/spool"
)

// Options are what Build and Send need; cmd/mxgate fills them from
// [digest] and the daemon's spool.
type Options struct {
	URL      string        // [digest] url: the links' base
	From     string        // [digest] from
	Hostname string        // the Message-Id's domain
	Domains  []string      // relay domains: only their recipients get digests
	Key      []byte        // the links' HMAC key
	Lifetime time.Duration // [digest] link_lifetime
	Now      func() time.Time
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Item is one quarantined message as a digest lists it.
type Item struct {
	ID       spool.ID
	Sender   string // the envelope sender, "<>" for the null one
	Subject  string // decoded (RFC 2047), control characters removed
	Score    string // the spam score X-Spam-Status records, "-" when none
	Received time.Time
	Release  string // the links
	Delete   string
}

// Mail is one recipient's digest, built and not yet committed.
type Mail struct {
	Recipient string
	Items     []Item
	Headers   []spool.Header // without Message-Id: Send adds it with the spool ID
	Body      []byte         // LF line ends
}

// Build makes a digest for each recipient in a relay domain with a
// pending quarantined message that told does not record as reported to
// it; to, when not "", limits it to that recipient (any case). Messages
// are listed oldest first; recipients come in the order of their first
// message.
func Build(o *Options, list []spool.QuarantineEntry, told *State, to string) []*Mail {
	now := o.now()
	byRcpt := map[string]*Mail{}
	var order []string
	for _, e := range list {
		env := e.Envelope
		for _, r := range env.Pending() {
			lr := strings.ToLower(r)
			if (to != "" && !strings.EqualFold(r, to)) || !o.local(lr) || told.Has(env.ID, lr) {
				continue
			}
			m := byRcpt[lr]
			if m == nil {
				m = &Mail{Recipient: r}
				byRcpt[lr] = m
				order = append(order, lr)
			}
			tok := Token{ID: env.ID, Recipient: r, Expires: now.Add(o.Lifetime)}
			tok.Action = Release
			rel := Link(o.URL, o.Key, tok)
			tok.Action = Delete
			m.Items = append(m.Items, Item{
				ID: env.ID, Sender: senderText(env.Sender), Subject: Subject(env.Headers), Score: Score(env.Headers),
				Received: env.Received, Release: rel, Delete: Link(o.URL, o.Key, tok),
			})
		}
	}
	mails := make([]*Mail, 0, len(order))
	for _, lr := range order {
		m := byRcpt[lr]
		m.Headers, m.Body = o.render(m, now)
		mails = append(mails, m)
	}
	return mails
}

// local reports whether addr (lower case) is in a relay domain.
func (o *Options) local(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	return at >= 0 && slices.Contains(o.Domains, addr[at+1:])
}

func senderText(s string) string {
	if s == "" {
		return "<>"
	}
	return s
}

// Subject is a message's Subject as a person reads it: RFC 2047 words
// decoded, on one line, control characters dropped; "(no subject)" when
// it has none.
func Subject(headers []spool.Header) string {
	for _, h := range headers {
		if h.Type == '*' || !strings.EqualFold(h.Name(), "Subject") {
			continue
		}
		v := h.UnfoldedValue()
		if d, err := new(mime.WordDecoder).DecodeHeader(v); err == nil {
			v = d
		}
		v = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, v)
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return "(no subject)"
}

var scoreRE = regexp.MustCompile(`score=(-?[0-9]+(?:\.[0-9]+)?)`)

// Score is the spam score spamd's X-Spam-Status stamp records, "-" when
// the message has none.
func Score(headers []spool.Header) string {
	for _, h := range headers {
		if h.Type != '*' && strings.EqualFold(h.Name(), "X-Spam-Status") {
			if m := scoreRE.FindStringSubmatch(h.Value()); m != nil {
				return m[1]
			}
		}
	}
	return "-"
}

// dateLayout is how a digest shows when a message was received, in the
// gateway's local time.
const dateLayout = "2006-01-02 15:04"

// subject is the digest's Subject line.
func subject(n int) string {
	if n == 1 {
		return "Quarantine report: 1 message held for you"
	}
	return fmt.Sprintf("Quarantine report: %d messages held for you", n)
}

// render makes m's headers and multipart/alternative body: a text part
// and an HTML part listing the same messages and links, both UTF-8 in
// quoted-printable (subjects come in any script; the links are longer
// than a line may be).
func (o *Options) render(m *Mail, now time.Time) ([]spool.Header, []byte) {
	var rnd [12]byte
	rand.Read(rnd[:])
	boundary := "=_mxgate_digest_" + hex.EncodeToString(rnd[:])
	until := now.Add(o.Lifetime).Format(dateLayout)
	hs := []spool.Header{
		{Type: 'F', Text: "From: " + o.From + "\n"},
		{Type: 'T', Text: "To: " + m.Recipient + "\n"},
		{Type: ' ', Text: "Subject: " + subject(len(m.Items)) + "\n"},
		{Type: ' ', Text: "Date: " + now.Format(time.RFC1123Z) + "\n"},
		{Type: ' ', Text: "MIME-Version: 1.0\n"},
		{Type: ' ', Text: "Content-Type: multipart/alternative; boundary=\"" + boundary + "\"\n"},
		{Type: ' ', Text: "Auto-Submitted: auto-generated\n"},
		{Type: ' ', Text: "X-Mxgate-Digest: " + fmt.Sprint(len(m.Items)) + "\n"},
	}
	var b bytes.Buffer
	b.WriteString("This is a multipart message in MIME format.\n")
	part := func(ctype string, content []byte) {
		fmt.Fprintf(&b, "\n--%s\nContent-Type: %s; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n", boundary, ctype)
		var q bytes.Buffer
		w := quotedprintable.NewWriter(&q)
		w.Write(content)
		w.Close()
		// The spool keeps LF line ends; the writer makes CRLF ones.
		b.Write(bytes.ReplaceAll(q.Bytes(), []byte("\r\n"), []byte("\n")))
		b.WriteString("\n")
	}
	part("text/plain", o.text(m, until))
	part("text/html", o.html(m, until))
	fmt.Fprintf(&b, "\n--%s--\n", boundary)
	return hs, b.Bytes()
}

func (o *Options) text(m *Mail, until string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s held these messages to you (%s)\nin quarantine as probable spam or malware.\n\n", o.Hostname, m.Recipient)
	b.WriteString("To receive one, open its release link; to drop it, its delete link.\n")
	b.WriteString("Each link shows what it will do and asks you to confirm.\n")
	b.WriteString("The links work until " + until + ".\n\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Received\tScore\tFrom\tSubject\n")
	for _, it := range m.Items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", it.Received.Local().Format(dateLayout), it.Score, it.Sender, it.Subject)
	}
	tw.Flush()
	for i, it := range m.Items {
		fmt.Fprintf(&b, "\n%d. %s, from %s\n   Release: %s\n   Delete:  %s\n", i+1, it.Subject, it.Sender, it.Release, it.Delete)
	}
	b.WriteString("\nThis report lists each message once.\nDo not forward it: its links act for you.\n")
	return b.Bytes()
}

var htmlPart = template.Must(template.New("digest").Funcs(template.FuncMap{"date": func(t time.Time) string { return t.Local().Format(dateLayout) }}).Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{.Subject}}</title></head>
<body>
<p>{{.Hostname}} held these messages to you ({{.Mail.Recipient}}) in quarantine as probable spam or malware.
To receive one, follow its <em>release</em> link; to drop it, its <em>delete</em> link.
Each link shows what it will do and asks you to confirm. The links work until {{.Until}}.</p>
<table border="1" cellpadding="4" cellspacing="0">
<tr><th>Received</th><th>Score</th><th>From</th><th>Subject</th><th></th></tr>
{{range .Mail.Items}}<tr><td>{{date .Received}}</td><td>{{.Score}}</td><td>{{.Sender}}</td><td>{{.Subject}}</td><td><a href="{{.Release}}">release</a> <a href="{{.Delete}}">delete</a></td></tr>
{{end}}</table>
<p>This report lists each message once. Do not forward it: its links act for you.</p>
</body></html>
`))

func (o *Options) html(m *Mail, until string) []byte {
	var b bytes.Buffer
	if err := htmlPart.Execute(&b, map[string]any{"Subject": subject(len(m.Items)), "Hostname": o.Hostname, "Mail": m, "Until": until}); err != nil {
		// The template and its data are ours: a failure is a build defect.
		panic(err)
	}
	return b.Bytes()
}
