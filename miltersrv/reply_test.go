package miltersrv

import (
	"testing"

	"github.com/emersion/go-smtp"

	"mxgate/filters"
)

// TestReply: the milter reply is what Postfix's milter8 takes as it is:
// an enhanced status code of the reply's class on every line, each '%'
// doubled (Postfix turns "%%" back into "%" and drops a single one).
func TestReply(t *testing.T) {
	tests := []struct {
		name string
		v    filters.Verdict
		want string
	}{
		{"as given", filters.Verdict{Code: 550, Enhanced: [3]int{5, 7, 1}, Text: "Virus found: Eicar"}, "550 5.7.1 Virus found: Eicar"},
		{"no enhanced code", filters.Verdict{Code: 550, Text: "Go away"}, "550 5.0.0 Go away"},
		{"go-smtp's none", filters.Verdict{Code: 451, Enhanced: smtp.NoEnhancedCode, Text: "Later"}, "451 4.0.0 Later"},
		{"percent", filters.Verdict{Code: 554, Enhanced: [3]int{5, 7, 1}, Text: "see http://bl.test/q?ip=1%2E2 100%"}, "554 5.7.1 see http://bl.test/q?ip=1%%2E2 100%%"},
		{"two lines", filters.Verdict{Code: 550, Text: "a\nb"}, "550-5.0.0 a\r\n550 5.0.0 b"},
	}
	for _, tt := range tests {
		m := reply(tt.v).Response()
		if got, want := string(m.Data), tt.want+"\x00"; m.Code != 'y' || got != want {
			t.Errorf("%s: %c %q, want y %q", tt.name, m.Code, got, want)
		}
	}
}
