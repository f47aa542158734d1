package msgauth

import (
	"strings"
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

// Claims reports whether the field name: value is an
// Authentication-Results claiming authservID (compared without case):
// only the host that is authservID may add one (RFC 8601 §5), so the
// pipeline removes a client's before any check reads it.
func Claims(name, value, authservID string) bool {
	if !strings.EqualFold(name, "Authentication-Results") {
		return false
	}
	id, ok := AuthservID(value)
	return ok && strings.EqualFold(id, authservID)
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
