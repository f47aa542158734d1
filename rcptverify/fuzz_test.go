package rcptverify

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseUserReply reads lines from Dovecot's socket, which may be any
// bytes: a verdict or an error, never a panic; only USER, NOTFOUND and
// FAIL for the request's id decide, and a detail is one safe line.
func FuzzParseUserReply(f *testing.F) {
	f.Add("USER\t7\tu@example.test\tuid=8\tgid=8\thome=/home/u", uint32(7))
	f.Add("NOTFOUND\t7", uint32(7))
	f.Add("FAIL\t7\treason=ldap\x01tdown", uint32(7))
	f.Add("SPID\t1234", uint32(1))
	f.Add("USER\t8\tother", uint32(7))
	f.Add("USER\t7", uint32(7))
	f.Fuzz(func(t *testing.T, line string, id uint32) {
		v, detail, err := parseUserReply(line, id)
		if err != nil {
			if v != Defer {
				t.Errorf("%q: error %v with verdict %v", line, err, v)
			}
			if !errors.Is(err, errOtherID) && strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("%q: error %q spans lines", line, err)
			}
			return
		}
		if strings.ContainsAny(detail, "\r\n\t\x00") {
			t.Errorf("%q: detail %q is not one safe line", line, detail)
		}
		cmd, _, _ := strings.Cut(line, "\t")
		switch {
		case v == Found && cmd != "USER", v == NotFound && cmd != "NOTFOUND", v == Defer && cmd != "FAIL":
			t.Errorf("%q: verdict %v", line, v)
		}
	})
}
