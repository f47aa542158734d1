// Package address owns envelope addresses: parsing the paths go-smtp hands to
// the session (RFC 5321 mailboxes, local part already unquoted), re-quoting
// them for the wire, and the relay policy that keeps mxgate from ever being
// an open relay.
package address

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// ErrSyntax is wrapped by every error Parse returns; the SMTP layer maps it
// to 501 5.1.3.
var ErrSyntax = errors.New("bad address syntax")

// RFC 5321 §4.5.3.1: local part 64 octets, domain 255 octets; a label of a
// domain name is at most 63 (RFC 1035).
const (
	maxLocal  = 64
	maxDomain = 255
	maxLabel  = 63
)

// Address is an envelope mailbox. Local is the local part as the mailbox
// owner spells it (unquoted, case preserved); Domain is lower-cased, and an
// address literal is kept in canonical form ("[192.0.2.1]", "[ipv6:2001:db8::1]").
type Address struct{ Local, Domain string }

// Parse parses an address in the form go-smtp passes to Session.Mail and
// Session.Rcpt: "local@domain" with any quoting of the local part already
// removed and any source route already dropped. The domain starts after the
// last "@", so a quoted local part holding "@" ("u@other.test"@example.test,
// handed over as u@other.test@example.test) keeps its "@" in Local, where
// the relay policy refuses it. Quotes are not interpreted: the string is
// taken literally.
func Parse(s string) (Address, error) {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return Address{}, fmt.Errorf("%w: %q has no domain", ErrSyntax, s)
	}
	local, domain := s[:at], s[at+1:]
	if err := checkLocal(local); err != nil {
		return Address{}, fmt.Errorf("%w: %q: %v", ErrSyntax, s, err)
	}
	d, err := canonicalDomain(domain)
	if err != nil {
		return Address{}, fmt.Errorf("%w: %q: %v", ErrSyntax, s, err)
	}
	return Address{Local: local, Domain: d}, nil
}

// ParseWire parses a mailbox in its wire form, as String writes it: a
// quoted local part is unquoted first, as go-smtp does, so that
// ParseWire(a.String()) gives a back.
func ParseWire(s string) (Address, error) { return Parse(unquote(s)) }

// unquote turns a wire mailbox whose local part is a quoted-string into
// the form go-smtp hands to the session: quotes and escapes removed.
func unquote(wire string) string {
	if !strings.HasPrefix(wire, `"`) {
		return wire
	}
	var b strings.Builder
	for i := 1; i < len(wire); i++ {
		switch c := wire[i]; {
		case c == '\\' && i+1 < len(wire):
			i++
			b.WriteByte(wire[i])
		case c == '"':
			return b.String() + wire[i+1:]
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func checkLocal(local string) error {
	switch {
	case local == "":
		return errors.New("empty local part")
	case len(local) > maxLocal:
		return fmt.Errorf("local part longer than %d octets", maxLocal)
	case !utf8.ValidString(local):
		return errors.New("local part is not valid UTF-8")
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("control character 0x%02x in local part", c)
		}
	}
	return nil
}

// canonicalDomain validates a domain or an address literal and returns it
// lower-cased. A trailing dot is a syntax error: RFC 5321 has no absolute
// domain names, and "example.test." must not slip past a comparison with
// "example.test" (nor be taken for a different domain that relays).
func canonicalDomain(d string) (string, error) {
	if d == "" {
		return "", errors.New("empty domain")
	}
	if len(d) > maxDomain {
		return "", fmt.Errorf("domain longer than %d octets", maxDomain)
	}
	if d[0] == '[' {
		return canonicalLiteral(d)
	}
	if !utf8.ValidString(d) {
		return "", errors.New("domain is not valid UTF-8")
	}
	// Lower-case first: case mapping can change the length of a UTF-8
	// label, and the limits apply to what is stored.
	d = strings.ToLower(d)
	if len(d) > maxDomain {
		return "", fmt.Errorf("domain longer than %d octets", maxDomain)
	}
	labels := strings.Split(d, ".")
	for _, l := range labels {
		if err := checkLabel(l); err != nil {
			return "", err
		}
	}
	if isDigits(labels[len(labels)-1]) {
		// RFC 1123 §2.1: a top-level label is never all digits, so this
		// is an IP address written without brackets.
		return "", errors.New("IP address not enclosed in [ ]")
	}
	return d, nil
}

func checkLabel(l string) error {
	switch {
	case l == "":
		return errors.New("empty label in domain (leading, trailing or double dot)")
	case len(l) > maxLabel:
		return fmt.Errorf("domain label longer than %d octets", maxLabel)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("domain label %q starts or ends with a hyphen", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		// Bytes >= 0x80 are UTF-8 U-labels (SMTPUTF8); the string was
		// checked to be valid UTF-8 before.
		if c >= 0x80 || c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' {
			continue
		}
		return fmt.Errorf("character %q not allowed in a domain", c)
	}
	return nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// canonicalLiteral accepts the two address literals of RFC 5321 §4.1.3
// ("[192.0.2.1]", "[IPv6:2001:db8::1]"); general literals are refused.
func canonicalLiteral(d string) (string, error) {
	if len(d) < 2 || d[len(d)-1] != ']' {
		return "", errors.New("unterminated address literal")
	}
	inner := d[1 : len(d)-1]
	if len(inner) >= 5 && strings.EqualFold(inner[:5], "ipv6:") {
		ip, err := netip.ParseAddr(inner[5:])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", fmt.Errorf("bad IPv6 address literal %q", d)
		}
		return "[ipv6:" + ip.String() + "]", nil
	}
	ip, err := netip.ParseAddr(inner)
	if err != nil || !ip.Is4() {
		return "", fmt.Errorf("bad address literal %q", d)
	}
	return "[" + ip.String() + "]", nil
}

// IsLiteral reports whether the domain is an address literal.
func (a Address) IsLiteral() bool { return strings.HasPrefix(a.Domain, "[") }

// String returns the mailbox as it goes on the wire inside "<>": the local
// part as a dot-string when it is one, else as an RFC 5321 quoted-string.
// The zero Address is the null path and gives "".
func (a Address) String() string {
	if a.Local == "" && a.Domain == "" {
		return ""
	}
	if isDotString(a.Local) {
		return a.Local + "@" + a.Domain
	}
	var b strings.Builder
	b.Grow(len(a.Local) + len(a.Domain) + 4)
	b.WriteByte('"')
	for i := 0; i < len(a.Local); i++ {
		if c := a.Local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(a.Local[i])
	}
	b.WriteString(`"@`)
	b.WriteString(a.Domain)
	return b.String()
}

// isDotString reports whether s is an RFC 5321 Dot-string (RFC 6531 allows
// UTF-8 in atext): atoms of atext separated by single dots.
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || c == '.' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", rune(c)) {
			return false
		}
	}
	return true
}
