package msgauth

import (
	"strings"

	"mxgate/spool"
)

// AuthservID returns the authserv-id of an Authentication-Results field
// value (RFC 8601 §2.2): the first token after CFWS, before any ";".
// go-msgauth's authres.Parse is not used because it breaks on comments
// and quoted strings (opendkim writes "(1024-bit key; unprotected)").
// ok is false when the value has no id, or one mangled beyond recognition.
func AuthservID(value string) (id string, ok bool) {
	var b strings.Builder
	depth := 0
	quoted := false
	for i := 0; i < len(value); i++ {
		c := value[i]
		switch {
		case c == '\\' && (depth > 0 || quoted):
			if quoted && i+1 < len(value) {
				b.WriteByte(value[i+1])
			}
			i++
		case quoted:
			if c == '"' {
				quoted = false
			} else {
				b.WriteByte(c)
			}
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == '"':
			if b.Len() > 0 {
				return "", false
			}
			quoted = true
		case c == ';':
			return finishID(&b)
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			// The id ends at the first white space; what follows before
			// ";" is the optional authres-version.
			if b.Len() > 0 {
				return finishID(&b)
			}
		default:
			b.WriteByte(c)
		}
	}
	if depth > 0 || quoted {
		return "", false
	}
	return finishID(&b)
}

func finishID(b *strings.Builder) (string, bool) {
	if b.Len() == 0 {
		return "", false
	}
	return b.String(), true
}

// RemoveForged marks deleted ('*') every Authentication-Results field that
// claims authservID (compared without case), as RFC 8601 §5 requires of
// the host that adds its own: a client could otherwise vouch for itself
// under our name. It returns how many fields were removed. The gateway
// calls it before the filters run, so no filter reads a forged result.
func RemoveForged(headers []spool.Header, authservID string) int {
	n := 0
	for i, h := range headers {
		if h.Type == '*' || !strings.EqualFold(h.Name(), "Authentication-Results") {
			continue
		}
		if id, ok := AuthservID(h.Value()); ok && strings.EqualFold(id, authservID) {
			headers[i].Type = '*'
			n++
		}
	}
	return n
}

// fold breaks an Authentication-Results header line after "; " so lines
// stay under 78 columns where the parts allow it; a part longer than that
// keeps its own line rather than be broken inside a value. authres.Format
// leaves a space after a result without properties ("dkim=none ;"),
// which goes too.
func fold(name, value string) string {
	parts := strings.Split(value, "; ")
	var b strings.Builder
	b.WriteString(name + ": ")
	col := len(name) + 2
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if i < len(parts)-1 {
			p += ";"
		}
		if i > 0 {
			if col+1+len(p) > 78 {
				b.WriteString("\n\t")
				col = 8
			} else {
				b.WriteByte(' ')
				col++
			}
		}
		b.WriteString(p)
		col += len(p)
	}
	b.WriteByte('\n')
	return b.String()
}
