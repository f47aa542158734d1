package dsn

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxgate/spool"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var (
	arrival = time.Date(2024, 5, 1, 10, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	date    = arrival.Add(26 * time.Hour)
)

var original = []spool.Header{
	{Type: 'P', Text: "Received: from client.up.test ([192.0.2.7])\n\tby mx.example.test with esmtp id 0t5C6f-0000c8-00\n\tfor bob@down.test; Wed, 01 May 2024 10:00:00 +0200\n"},
	{Type: 'F', Text: "From: Alice <alice@up.test>\n"},
	{Type: 'T', Text: "To: bob@down.test, carol@down.test\n"},
	{Type: '*', Text: "X-Spam-Flag: YES\n"},
	{Type: ' ', Text: "Subject: quarterly report\n"},
	{Type: ' ', Text: "Date: Wed, 01 May 2024 09:59:58 +0200\n"},
	{Type: 'I', Text: "Message-ID: <abc@up.test>\n"},
}

func report(rcpts ...Recipient) *Report {
	return &Report{
		Hostname:   "mx.example.test",
		ID:         "0t5C6f-0000c8-00",
		Sender:     "alice@up.test",
		Arrival:    arrival,
		Headers:    original,
		Recipients: rcpts,
		MessageID:  "E0t5Dh2-0000d1-7K",
		Date:       date,
		Boundary:   "1714636800-mxgate-0123456789abcdef",
	}
}

var (
	bob = Recipient{
		Addr:  "bob@down.test",
		Host:  "mx.down.test [192.0.2.25]",
		Reply: "550 5.1.1 <bob@down.test>: Recipient address rejected: User unknown",
		Err:   "SMTP error from remote mail server after RCPT TO:<bob@down.test>: 550 5.1.1 <bob@down.test>: Recipient address rejected: User unknown",
	}
	carolTimeout = Recipient{
		Addr:   "carol@down.test",
		Host:   "mx.down.test [192.0.2.25]",
		Reply:  "451 4.7.1 greylisted",
		Err:    "retry timeout exceeded",
		Status: "5.4.7",
	}
	carolDeferred = Recipient{
		Addr:  "carol@down.test",
		Host:  "mx.down.test [192.0.2.25]",
		Reply: "451 4.7.1 greylisted",
		Err:   "SMTP error from remote mail server after RCPT TO:<carol@down.test>: 451 4.7.1 greylisted",
	}
	daveRefused = Recipient{Addr: "dave@down.test", Err: "Connection refused"}
)

func TestGolden(t *testing.T) {
	delay := report(carolDeferred, daveRefused)
	delay.Delay, delay.Queued = 24*time.Hour, 26*time.Hour
	delayOne := report(carolDeferred)
	delayOne.Delay, delayOne.Queued = 30*time.Minute, 95*time.Minute
	tests := []struct {
		file  string
		build func(*Report) (*Message, error)
		r     *Report
	}{
		{"failure.eml", Failure, report(bob, carolTimeout)},
		{"failure-one.eml", Failure, report(Recipient{Addr: "erin@down.test", Host: "/run/dovecot/lmtp", Err: "the mailbox name is not acceptable to the mail store"})},
		{"delay.eml", Delay, delay},
		{"delay-minutes.eml", Delay, delayOne},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m, err := tt.build(tt.r)
			if err != nil {
				t.Fatal(err)
			}
			got := m.Bytes()
			path := filepath.Join("testdata", tt.file)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the golden file; got:\n%s", tt.file, got)
			}
			if bytes.Contains(got, []byte("\r")) {
				t.Errorf("%s has a CR: the spool form has LF endings", tt.file)
			}
		})
	}
}

// part is one MIME part of a parsed report.
type part struct {
	contentType string
	body        string
}

// parse reads a built message as a mail client would.
func parse(t *testing.T, m *Message) (*mail.Message, []part) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Bytes()))
	if err != nil {
		t.Fatalf("net/mail cannot read the report: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q (%v): want multipart/report; report-type=delivery-status", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var parts []part
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("part %d: %v", len(parts)+1, err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, part{p.Header.Get("Content-Type"), string(b)})
	}
	return msg, parts
}

// statusFields splits a message/delivery-status body into its field
// blocks: the per-message one, then one per recipient.
func statusFields(t *testing.T, body string) []textproto.MIMEHeader {
	t.Helper()
	var blocks []textproto.MIMEHeader
	r := textproto.NewReader(bufio.NewReader(strings.NewReader(body)))
	for {
		h, err := r.ReadMIMEHeader()
		if len(h) > 0 {
			blocks = append(blocks, h)
		}
		if err == io.EOF {
			return blocks
		}
		if err != nil {
			t.Fatalf("delivery-status fields: %v", err)
		}
	}
}

func TestFailureParses(t *testing.T) {
	m, err := Failure(report(bob, carolTimeout))
	if err != nil {
		t.Fatal(err)
	}
	msg, parts := parse(t, m)
	for name, want := range map[string]string{
		"From":                "Mail Delivery System <Mailer-Daemon@mx.example.test>",
		"To":                  "alice@up.test",
		"Auto-Submitted":      "auto-replied",
		"Subject":             "Mail delivery failed: returning message to sender",
		"Mime-Version":        "1.0",
		"Message-Id":          "<E0t5Dh2-0000d1-7K@mx.example.test>",
		"X-Failed-Recipients": "bob@down.test, carol@down.test",
	} {
		got := strings.Join(strings.Fields(msg.Header.Get(name)), " ")
		if got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if d, err := msg.Header.Date(); err != nil || !d.Equal(date) {
		t.Errorf("Date: %v (%v), want %v", d, err, date)
	}
	if from, err := msg.Header.AddressList("From"); err != nil || from[0].Address != "Mailer-Daemon@mx.example.test" {
		t.Errorf("From does not parse as an address: %v %v", from, err)
	}
	if len(parts) != 3 {
		t.Fatalf("%d parts, want 3", len(parts))
	}
	for i, want := range []string{"text/plain; charset=us-ascii", "message/delivery-status", "text/rfc822-headers"} {
		if parts[i].contentType != want {
			t.Errorf("part %d Content-Type %q, want %q", i+1, parts[i].contentType, want)
		}
	}
	for _, want := range []string{"  bob@down.test\n", "    550 5.1.1 <bob@down.test>: Recipient address rejected:\n    User unknown\n", "  carol@down.test\n", "retry timeout exceeded"} {
		if !strings.Contains(parts[0].body, want) {
			t.Errorf("text part lacks %q:\n%s", want, parts[0].body)
		}
	}
	blocks := statusFields(t, parts[1].body)
	if len(blocks) != 3 {
		t.Fatalf("%d field blocks in the delivery-status part, want 3:\n%s", len(blocks), parts[1].body)
	}
	if got := blocks[0].Get("Reporting-Mta"); got != "dns; mx.example.test" {
		t.Errorf("Reporting-MTA %q", got)
	}
	if got, err := mail.ParseDate(blocks[0].Get("Arrival-Date")); err != nil || !got.Equal(arrival) {
		t.Errorf("Arrival-Date %q (%v), want %v", blocks[0].Get("Arrival-Date"), err, arrival)
	}
	want := []map[string]string{
		{"Final-Recipient": "rfc822; bob@down.test", "Action": "failed", "Status": "5.1.1", "Remote-Mta": "dns; mx.down.test", "Diagnostic-Code": "smtp; " + bob.Reply},
		{"Final-Recipient": "rfc822; carol@down.test", "Action": "failed", "Status": "5.4.7", "Remote-Mta": "dns; mx.down.test", "Diagnostic-Code": "smtp; 451 4.7.1 greylisted"},
	}
	for i, w := range want {
		for k, v := range w {
			if got := blocks[i+1].Get(k); got != v {
				t.Errorf("recipient %d %s: %q, want %q", i+1, k, got, v)
			}
		}
	}
	hdrs, err := mail.ReadMessage(strings.NewReader(parts[2].body))
	if err != nil {
		t.Fatalf("returned headers do not parse: %v", err)
	}
	if got := hdrs.Header.Get("Subject"); got != "quarterly report" {
		t.Errorf("returned Subject %q", got)
	}
	if got := hdrs.Header.Get("Return-Path"); got != "<alice@up.test>" {
		t.Errorf("returned Return-path %q", got)
	}
	if got := hdrs.Header.Get("X-Spam-Flag"); got != "" {
		t.Errorf("a deleted header was returned: X-Spam-Flag %q", got)
	}
	if b, _ := io.ReadAll(hdrs.Body); len(bytes.TrimSpace(b)) != 0 {
		t.Errorf("the headers part carries a body: %q", b)
	}
}

func TestDelayParses(t *testing.T) {
	r := report(carolDeferred)
	r.Delay, r.Queued = 24*time.Hour, 24*time.Hour+time.Minute
	m, err := Delay(r)
	if err != nil {
		t.Fatal(err)
	}
	msg, parts := parse(t, m)
	if got, want := msg.Header.Get("Subject"), "Warning: message 0t5C6f-0000c8-00 delayed 24 hours"; got != want {
		t.Errorf("Subject %q, want %q", got, want)
	}
	if len(parts) != 3 {
		t.Fatalf("%d parts, want 3", len(parts))
	}
	blocks := statusFields(t, parts[1].body)
	if len(blocks) != 2 {
		t.Fatalf("%d field blocks, want 2:\n%s", len(blocks), parts[1].body)
	}
	for k, v := range map[string]string{"Action": "delayed", "Status": "4.7.1", "Final-Recipient": "rfc822; carol@down.test"} {
		if got := blocks[1].Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
}

// The delay is the multiple of delay_warning passed, rounded down, in
// the unit that reads naturally: never "0 minutes", never "1 hours".
func TestDelayText(t *testing.T) {
	tests := []struct {
		every, queued time.Duration
		want          string
	}{
		{time.Second, 1500 * time.Millisecond, "1 second"},
		{500 * time.Millisecond, 700 * time.Millisecond, "1 second"},
		{20 * time.Second, 10 * time.Second, "20 seconds"},
		{30 * time.Second, 100 * time.Second, "1 minute"},
		{time.Minute, time.Minute, "1 minute"},
		{30 * time.Minute, 95 * time.Minute, "90 minutes"},
		{90 * time.Minute, 125 * time.Minute, "90 minutes"},
		{90 * time.Minute, 3 * time.Hour, "3 hours"},
		{time.Hour, 119 * time.Minute, "60 minutes"},
		{time.Hour, 2 * time.Hour, "2 hours"},
		{24 * time.Hour, 25 * time.Hour, "24 hours"},
		{24 * time.Hour, 71 * time.Hour, "48 hours"},
	}
	for _, tt := range tests {
		r := report(carolDeferred)
		r.Delay, r.Queued = tt.every, tt.queued
		m, err := Delay(r)
		if err != nil {
			t.Fatal(err)
		}
		msg, parts := parse(t, m)
		if got, want := msg.Header.Get("Subject"), "Warning: message 0t5C6f-0000c8-00 delayed "+tt.want; got != want {
			t.Errorf("delay_warning %v, queued %v: Subject %q, want %q", tt.every, tt.queued, got, want)
		}
		if want := "recipients after more than " + tt.want + " on the queue on mx.example.test.\n"; !strings.Contains(parts[0].body, want) {
			t.Errorf("delay_warning %v, queued %v: text lacks %q:\n%s", tt.every, tt.queued, want, parts[0].body)
		}
	}
}

// A status of the wrong class for the action is not reported: a failure
// after a 4xx is 5.0.0, a delay after a 5xx text 4.0.0.
func TestStatusClass(t *testing.T) {
	tests := []struct {
		rc    Recipient
		class byte
		want  string
	}{
		{Recipient{Reply: "550 5.1.1 unknown"}, '5', "5.1.1"},
		{Recipient{Err: "SMTP error from remote mail server after RCPT TO:<a@b>: 552-5.2.2 over quota"}, '5', "5.2.2"},
		{Recipient{Reply: "451 4.7.1 greylisted"}, '5', "5.0.0"},
		{Recipient{Reply: "550 5.1.1 unknown"}, '4', "4.0.0"},
		{Recipient{Err: "Connection refused"}, '4', "4.0.0"},
		{Recipient{Reply: "451 4.7.1 x", Status: "5.4.7"}, '5', "5.4.7"},
	}
	for _, tt := range tests {
		if got := status(tt.rc, tt.class); got != tt.want {
			t.Errorf("status(%+v, %c) = %s, want %s", tt.rc, tt.class, got, tt.want)
		}
	}
}

func TestEnhancedStatus(t *testing.T) {
	tests := []struct{ text, want string }{
		{"550 5.1.1 no such user", "5.1.1"},
		{"550-5.7.1 policy", "5.7.1"},
		{"SMTP error from remote mail server after RCPT TO:<a@b>: 452 4.2.2 mailbox full", "4.2.2"},
		{"LMTP error from remote mail server after end of data: 552 5.2.2 quota\n552 5.2.2 more", "5.2.2"},
		{"250 2.0.0 Ok", "2.0.0"},
		{"550 5.123.456", "5.123.456"},
		{"550 5.1234.1 too long", ""},
		{"550 4.1.1 class differs from the code", ""},
		{"host 192.0.2.5 [192.0.2.5]: 550 no enhanced code", ""},
		{"550 5.1.1.1 trailing dot part", ""},
		{"1550 5.1.1 not a reply code", ""},
		{"550 5.1.", ""},
		{"Connection refused", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := EnhancedStatus(tt.text); got != tt.want {
			t.Errorf("EnhancedStatus(%q) = %q, want %q", tt.text, got, tt.want)
		}
	}
}

func TestRefused(t *testing.T) {
	tests := map[string]func(*Report){
		"null sender":     func(r *Report) { r.Sender = "" },
		"no recipient":    func(r *Report) { r.Recipients = nil },
		"no host name":    func(r *Report) { r.Hostname = "" },
		"no message id":   func(r *Report) { r.MessageID = "" },
		"header breaking": func(r *Report) { r.Sender = "a@b\nBcc: x@y" },
	}
	for name, edit := range tests {
		t.Run(name, func(t *testing.T) {
			r := report(bob)
			edit(r)
			if m, err := Failure(r); err == nil {
				t.Errorf("Failure built %s", m.Bytes())
			}
			r.Delay = time.Hour
			if m, err := Delay(r); err == nil {
				t.Errorf("Delay built %s", m.Bytes())
			}
		})
	}
}

// Remote text cannot add fields or lines that a parser would take for
// its own: control characters become '?', line breaks are folded.
func TestHostileRemoteText(t *testing.T) {
	r := report(Recipient{
		Addr:  "bob@down.test",
		Host:  "mx.down.test [192.0.2.25]",
		Reply: "550 5.1.1 bad\r\nAction: delivered\x1b[31m",
		Err:   "SMTP error: 550 5.1.1 bad\r\nAction: delivered\x1b[31m",
	})
	m, err := Failure(r)
	if err != nil {
		t.Fatal(err)
	}
	_, parts := parse(t, m)
	blocks := statusFields(t, parts[1].body)
	if len(blocks) != 2 {
		t.Fatalf("%d field blocks, want 2:\n%s", len(blocks), parts[1].body)
	}
	if got := blocks[1].Get("Action"); got != "failed" {
		t.Errorf("Action %q, want failed", got)
	}
	if bytes.ContainsAny(m.Body, "\r\x1b") {
		t.Errorf("control characters left in the body:\n%q", m.Body)
	}
}

// Without an injected boundary each report gets its own, and still parses.
func TestRandomBoundary(t *testing.T) {
	var seen []string
	for range 2 {
		r := report(bob)
		r.Boundary = ""
		m, err := Failure(r)
		if err != nil {
			t.Fatal(err)
		}
		msg, parts := parse(t, m)
		if len(parts) != 3 {
			t.Fatalf("%d parts, want 3", len(parts))
		}
		_, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		seen = append(seen, params["boundary"])
	}
	if seen[0] == seen[1] || !strings.HasPrefix(seen[0], fmt.Sprintf("%d-mxgate-", date.Unix())) {
		t.Errorf("boundaries %q", seen)
	}
}

func TestWantsDelayWarning(t *testing.T) {
	tests := []struct {
		header string
		want   bool
	}{
		{"Subject: hi\n", true},
		{"List-Id: <l.example>\n", false},
		{"List-Post: <mailto:l@example>\n", false},
		{"Precedence: Bulk\n", false},
		{"Precedence: first-class\n", true},
		{"Auto-Submitted: auto-replied\n", false},
		{"Auto-Submitted: no\n", true},
	}
	for _, tt := range tests {
		h := []spool.Header{{Type: ' ', Text: "From: a@b\n"}, {Type: ' ', Text: tt.header}}
		if got := WantsDelayWarning(h); got != tt.want {
			t.Errorf("WantsDelayWarning(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
	if !WantsDelayWarning([]spool.Header{{Type: '*', Text: "Precedence: bulk\n"}}) {
		t.Error("a deleted Precedence header stopped the warning")
	}
}
