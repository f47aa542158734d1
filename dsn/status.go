package dsn

// EnhancedStatus returns the RFC 3463 enhanced status code ("5.1.1") that
// follows an SMTP reply code in text, as in "550 5.1.1 no such user" or
// "550-5.7.1 ..." inside a longer error ("SMTP error from remote mail server
// after RCPT TO:<a@b>: 550 5.1.1 ..."); "" when there is none. The class must
// match the reply code's first digit, so that an address or a version number
// is never taken for one.
func EnhancedStatus(text string) string {
	for i := 0; i+4 < len(text); i++ {
		if i > 0 && !isBoundary(text[i-1]) {
			continue
		}
		c := text[i]
		if (c != '2' && c != '4' && c != '5') || !isDigit(text[i+1]) || !isDigit(text[i+2]) ||
			(text[i+3] != ' ' && text[i+3] != '-') {
			continue
		}
		if s, ok := statusAt(text[i+4:]); ok && s[0] == c {
			return s
		}
	}
	return ""
}

// statusAt reads "class.subject.detail" at the start of s (RFC 3463: class
// 2, 4 or 5; subject and detail of one to three digits), which must end
// the text or be followed by white space.
func statusAt(s string) (string, bool) {
	if s == "" || (s[0] != '2' && s[0] != '4' && s[0] != '5') || len(s) < 2 || s[1] != '.' {
		return "", false
	}
	i := 2
	for part := 0; part < 2; part++ {
		n := 0
		for i < len(s) && isDigit(s[i]) && n < 4 {
			i++
			n++
		}
		if n == 0 || n > 3 {
			return "", false
		}
		if part == 0 {
			if i >= len(s) || s[i] != '.' {
				return "", false
			}
			i++
		}
	}
	if i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' {
		return "", false
	}
	return s[:i], true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isBoundary is what may precede a reply code: the start of a line or of a
// field, never part of a number or word.
func isBoundary(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == ':' || c == '"' || c == '('
}
