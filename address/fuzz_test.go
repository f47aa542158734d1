package address

import (
	"strings"
	"testing"
)

// goSMTPForm is what go-smtp's server parser makes of a mailbox written
// inside "<>": a quoted local part loses its quotes and escapes.
func goSMTPForm(wire string) string {
	if !strings.HasPrefix(wire, `"`) {
		return wire
	}
	var b strings.Builder
	for i := 1; i < len(wire); i++ {
		switch c := wire[i]; c {
		case '\\':
			i++
			b.WriteByte(wire[i])
		case '"':
			return b.String() + wire[i+1:]
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(a.Local + "@" + a.Domain)
		if err != nil || again != a {
			t.Fatalf("Parse(%q) = %+v, but parsing its parts gives %+v, %v", s, a, again, err)
		}
		wire := a.String()
		if strings.ContainsAny(wire, "\r\n\x00") {
			t.Fatalf("String() of %q = %q holds a line break or NUL", s, wire)
		}
		back, err := Parse(goSMTPForm(wire))
		if err != nil || back != a {
			t.Fatalf("%+v went on the wire as %q and came back as %+v, %v", a, wire, back, err)
		}
		if strings.ToLower(a.Domain) != a.Domain {
			t.Fatalf("Domain %q of %q is not lower-case", a.Domain, s)
		}
	})
}
