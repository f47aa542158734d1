// Package smtptext makes text that came from elsewhere (a remote server's
// reply, a DNS TXT record, a milter's reason) safe to quote in our SMTP
// replies and log lines: one line of printable ASCII, bounded in length,
// so it can neither forge a line of our reply nor break a log line.
package smtptext

// MaxQuoted bounds quoted text, well inside the 512 octets of an SMTP
// reply line.
const MaxQuoted = 300

// Clean returns s as one line of printable ASCII of at most MaxQuoted
// bytes: CR, LF and tab become spaces, other control and non-ASCII bytes
// become "?".
func Clean(s string) string {
	b := make([]byte, 0, min(len(s), MaxQuoted))
	for i := 0; i < len(s) && len(b) < MaxQuoted; i++ {
		c := s[i]
		switch {
		case c == '\r' || c == '\n' || c == '\t':
			c = ' '
		case c < 0x20 || c >= 0x7f:
			c = '?'
		}
		b = append(b, c)
	}
	return string(b)
}
