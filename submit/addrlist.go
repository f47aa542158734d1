package submit

import (
	"strings"
)

// addressList returns the addr-specs of an RFC 5322 address-list header
// value (To:, Cc:, Bcc:, ...), in order, as written: "<addr>" of a
// name-addr, or a bare addr-spec, possibly without a domain ("root", as
// cron writes). Comments, display names, group names and source routes are
// dropped; quoted strings are kept with their quotes. A folded value may
// be passed as it is.
//
// It is lenient where real headers are sloppy (a missing "<", a stray
// ";") and strict only where guessing would pick the wrong mailbox: a bare
// element with white space inside ("John Doe", a name without an
// address) is returned in bad, as written, and is no address.
func addressList(v string) (out, bad []string) {
	var (
		outside elem // the element's text outside <>
		inside  elem // the text inside <>
		inAngle bool
		hadAng  bool
		quoted  bool
		comment int // nesting depth
	)
	cur := func() *elem {
		if inAngle {
			return &inside
		}
		return &outside
	}
	flush := func() {
		e := &outside
		if hadAng {
			e = &inside
		}
		spec := e.b.String()
		if hadAng {
			// A source route "@a,@b:user@d" leads to user@d.
			if strings.HasPrefix(spec, "@") {
				if i := strings.LastIndexByte(spec, ':'); i >= 0 {
					spec = spec[i+1:]
				}
			}
		} else if e.broken {
			// On one line, as the header's white space would not print.
			words := strings.FieldsFunc(strings.TrimRight(outside.raw.String(), ",;"), func(r rune) bool {
				return r == ' ' || r == '\t' || r == '\r' || r == '\n'
			})
			bad = append(bad, strings.Join(words, " "))
			spec = ""
		}
		if spec != "" {
			out = append(out, spec)
		}
		outside, inside = elem{}, elem{}
		hadAng, inAngle = false, false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !inAngle && comment == 0 {
			outside.raw.WriteByte(c)
		}
		switch {
		case comment > 0:
			switch c {
			case '\\':
				i++
			case '(':
				comment++
			case ')':
				comment--
			}
		case quoted:
			cur().add(c)
			if c == '\\' && i+1 < len(v) {
				i++
				cur().add(v[i])
			} else if c == '"' {
				quoted = false
			}
		case c == '"':
			quoted = true
			cur().add(c)
		case c == '(':
			comment = 1
			cur().space()
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			cur().space()
		case c == '<' && !inAngle:
			inAngle, hadAng = true, true
			inside = elem{}
		case c == '>' && inAngle:
			inAngle = false
		case c == ',' && !inAngle, c == ';' && !inAngle:
			flush()
		case c == ':' && !inAngle:
			// "group-name:" opens a group: its name is no mailbox.
			outside = elem{}
		default:
			cur().add(c)
		}
	}
	flush()
	return out, bad
}

// elem collects an addr-spec without its white space. White space between
// two words that are not joined by "@" or "." (obsolete syntax allows
// "user @ example . test") marks it broken.
type elem struct {
	b, raw  strings.Builder
	pending bool // white space seen after some text
	broken  bool
}

func (e *elem) space() {
	if e.b.Len() > 0 {
		e.pending = true
	}
}

func (e *elem) add(c byte) {
	if c == '\r' || c == '\n' {
		return // folding inside a quoted string
	}
	if e.pending {
		s := e.b.String()
		if last := s[len(s)-1]; last != '@' && last != '.' && c != '@' && c != '.' {
			e.broken = true
		}
		e.pending = false
	}
	e.b.WriteByte(c)
}
