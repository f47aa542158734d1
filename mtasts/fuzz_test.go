package mtasts

import (
	"strings"
	"testing"
)

// FuzzParse: a policy file is bytes off the network. Parse never panics,
// and what it accepts is a policy the transport can use.
func FuzzParse(f *testing.F) {
	f.Add([]byte("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		if p.Mode != Enforce && p.Mode != Testing && p.Mode != None {
			t.Errorf("mode %q", p.Mode)
		}
		if p.MaxAge < 0 || p.MaxAge.Seconds() > maxMaxAge {
			t.Errorf("max_age %v", p.MaxAge)
		}
		if p.Mode != None && len(p.MX) == 0 {
			t.Error("no mx")
		}
		for _, mx := range p.MX {
			if strings.ToLower(mx) != mx || !validPattern(mx) {
				t.Errorf("mx %q", mx)
			}
			p.Match(mx)
		}
	})
}

// FuzzParseRecord: so is the TXT record.
func FuzzParseRecord(f *testing.F) {
	f.Add("v=STSv1; id=20160831085700Z;")
	f.Fuzz(func(t *testing.T, rec string) {
		id, err := ParseRecord([]string{rec})
		if err == nil && (id == "" || len(id) > 32) {
			t.Errorf("id %q", id)
		}
	})
}
