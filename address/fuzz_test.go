package address

import (
	"strings"
	"testing"
)

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
		back, err := ParseWire(wire)
		if err != nil || back != a {
			t.Fatalf("%+v went on the wire as %q and came back as %+v, %v", a, wire, back, err)
		}
		if strings.ToLower(a.Domain) != a.Domain {
			t.Fatalf("Domain %q of %q is not lower-case", a.Domain, s)
		}
	})
}
