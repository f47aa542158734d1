package deliver

import (
	"fmt"
	"strings"
)

// checkAddr refuses what can never be put on the wire or into a header:
// control characters (CR and LF would inject commands or header lines; RFC
// 5321 has no way to quote the others).
func checkAddr(a string) error {
	for i := 0; i < len(a); i++ {
		if c := a[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("address %q contains control character %#02x", a, c)
		}
	}
	return nil
}

// splitAddr splits at the last "@": a quoted local part may hold "@" itself.
// An address without "@" (postmaster) has an empty domain.
func splitAddr(a string) (local, domain string, hasDomain bool) {
	i := strings.LastIndexByte(a, '@')
	if i < 0 {
		return a, "", false
	}
	return a[:i], a[i+1:], true
}

// wireAddr is the address as it goes into MAIL FROM:<> or RCPT TO:<>. go-smtp
// writes it raw, and its server (like others) hands local parts to the
// backend unquoted ("john doe@example.test"), so a local part that is neither
// a dot-atom nor already a quoted string is quoted again here. Addresses
// have passed checkAddr.
func wireAddr(a string) string {
	if a == "" {
		return ""
	}
	local, domain, hasDomain := splitAddr(a)
	if !isDotAtom(local) && !isQuotedString(local) {
		local = quoteLocal(local)
	}
	if !hasDomain {
		return local
	}
	return local + "@" + domain
}

// plainLocal is the local part with RFC 5321 quoting removed: the mailbox
// name a Maildir directory is called after.
func plainLocal(local string) string {
	if !isQuotedString(local) {
		return local
	}
	var b strings.Builder
	inner := local[1 : len(local)-1]
	for i := 0; i < len(inner); i++ {
		if inner[i] == '\\' && i+1 < len(inner) {
			i++
		}
		b.WriteByte(inner[i])
	}
	return b.String()
}

func quoteLocal(local string) string {
	var b strings.Builder
	b.Grow(len(local) + 2)
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String()
}

// isAtext is RFC 5322 atext, plus the UTF-8 bytes RFC 6531 allows.
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c >= 0x80:
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '.' && !isAtext(s[i]) {
			return false
		}
	}
	return true
}

// isQuotedString is RFC 5321 Quoted-string: qtextSMTP or quoted-pairSMTP
// (backslash and one printable character) between double quotes.
func isQuotedString(s string) bool {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return false
	}
	inner := s[1 : len(s)-1]
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		switch {
		case c == '\\':
			i++
			if i == len(inner) || inner[i] < 0x20 || inner[i] == 0x7f {
				return false
			}
		case c == '"', c < 0x20, c == 0x7f:
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
