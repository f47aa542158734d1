// Package smtptext owns the text of SMTP replies: making remote text safe
// to quote in our own replies and in log lines (Clean), and writing a reply
// from its code, enhanced status code and text (Reply, Lines, FromError).
package smtptext

import (
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
)

// Clean makes text from elsewhere (a remote server's reply, a DNS TXT
// record, a scanner's verdict) safe for an SMTP reply and a log line:
// printable ASCII only, one line, at most max bytes. CR, LF and TAB become
// spaces; every other byte below 0x20 or above 0x7e becomes '?', so
// neither escape sequences nor UTF-8 reach a terminal or a reply. Text
// longer than max is cut to max-3 bytes and "..." added; max <= 0 means no
// bound.
func Clean(s string, max int) string {
	if max > 0 && len(s) > max {
		s = s[:max-min(3, max)] + "..."[:min(3, max)]
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c == '\r' || c == '\n' || c == '\t':
			b[i] = ' '
		case c < 0x20 || c > 0x7e:
			b[i] = '?'
		}
	}
	return string(b)
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
