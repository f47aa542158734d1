// Package smtptext owns the text of SMTP replies: making text that came
// from elsewhere (a remote server's reply, a DNS TXT record, a milter's
// reason) safe to quote in our SMTP replies and log lines — one line of
// printable ASCII, bounded in length, so it can neither forge a line of
// our reply nor break a log line (Clean, CleanMax) — and writing a reply
// from its code, enhanced status code and text (Reply, Lines, FromError).
package smtptext

import (
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
)

// MaxQuoted bounds quoted text, well inside the 512 octets of an SMTP
// reply line.
const MaxQuoted = 300

// Clean returns s as one line of printable ASCII of at most MaxQuoted
// bytes: CR, LF and tab become spaces, other control and non-ASCII bytes
// become "?".
func Clean(s string) string {
	b := make([]byte, 0, min(len(s), MaxQuoted))
	for i := 0; i < len(s) && len(b) < MaxQuoted; i++ {
		b = append(b, printable(s[i]))
	}
	return string(b)
}

// CleanMax is Clean with its own bound, and a visible cut: text longer
// than max bytes is cut to max-3 bytes and "..." added; max <= 0 means no
// bound. It is what quotes a whole remote reply or DNS TXT reason in a
// log line and a reply (callout, rbl), and one line of remote text in a
// DSN (max 0).
func CleanMax(s string, max int) string {
	if max > 0 && len(s) > max {
		s = s[:max-min(3, max)] + "..."[:min(3, max)]
	}
	b := make([]byte, len(s))
	for i := 0; i < len(s); i++ {
		b[i] = printable(s[i])
	}
	return string(b)
}

func printable(c byte) byte {
	switch {
	case c == '\r' || c == '\n' || c == '\t':
		return ' '
	case c < 0x20 || c >= 0x7f:
		return '?'
	}
	return c
}

// hasEnhanced reports whether enh is an enhanced status code to write: not
// zero, and not go-smtp's NoEnhancedCode.
func hasEnhanced(enh [3]int) bool {
	return enh != [3]int{} && enh[0] > 0 && enh[1] >= 0 && enh[2] >= 0
}

// Reply is an SMTP reply on one line, for logs and for quoting a reply in
// another: "550 5.1.1 No such user". The lines of a multi-line text are
// joined with a space; a zero enh (or go-smtp's NoEnhancedCode) is left
// out, as is an empty text.
func Reply(code int, enh [3]int, text string) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(code))
	if hasEnhanced(enh) {
		b.WriteByte(' ')
		writeEnhanced(&b, enh)
	}
	text = strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", " ")
	if text != "" {
		b.WriteByte(' ')
		b.WriteString(text)
	}
	return b.String()
}

// Lines is the reply as it goes on the wire (RFC 5321 §4.2.1, RFC 2034):
// one line per line of text, each "CODE-X.Y.Z text" but the last, which
// is "CODE X.Y.Z text"; without CRLF. A zero enh is left out.
func Lines(code int, enh [3]int, text string) []string {
	parts := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	out := make([]string, len(parts))
	for i, p := range parts {
		var b strings.Builder
		b.WriteString(strconv.Itoa(code))
		if i < len(parts)-1 {
			b.WriteByte('-')
		} else {
			b.WriteByte(' ')
		}
		if hasEnhanced(enh) {
			writeEnhanced(&b, enh)
			if p != "" {
				b.WriteByte(' ')
			}
		}
		b.WriteString(p)
		out[i] = strings.TrimRight(b.String(), " ")
	}
	return out
}

// FromError is Reply for a reply go-smtp parsed (a client's error).
func FromError(e *smtp.SMTPError) string {
	return Reply(e.Code, [3]int(e.EnhancedCode), e.Message)
}

func writeEnhanced(b *strings.Builder, enh [3]int) {
	b.WriteString(strconv.Itoa(enh[0]))
	b.WriteByte('.')
	b.WriteString(strconv.Itoa(enh[1]))
	b.WriteByte('.')
	b.WriteString(strconv.Itoa(enh[2]))
}
