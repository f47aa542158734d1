package mtasts

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string // Mode MX MaxAge, or "error: ..." (a prefix of the error)
	}{
		{"RFC example", "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
			"enforce [mail.example.com *.example.net backupmx.example.com] 168h0m0s"},
		{"LF, blanks, case, final dot, unknown key", "version: STSv1\nmode: testing\n\nmx: MX.Example.TEST.\nfoo_bar: baz\nmax_age:86400\n",
			"testing [mx.example.test] 24h0m0s"},
		{"mode none needs no mx", "version: STSv1\nmode: none\nmax_age: 0\n", "none [] 0s"},
		{"max_age capped at a year", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 9999999999\n", "enforce [a.test] 8766h0m0s"},
		{"first of a repeated field counts", "version: STSv1\nmode: testing\nmode: enforce\nmx: a.test\nmax_age: 60\n", "testing [a.test] 1m0s"},
		{"no version", "mode: enforce\nmx: a.test\nmax_age: 60\n", `error: version ""`},
		{"wrong version", "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 60\n", `error: version "STSv2"`},
		{"unknown mode", "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 60\n", `error: line 2: unknown mode`},
		{"no mx", "version: STSv1\nmode: enforce\nmax_age: 60\n", "error: no mx"},
		{"no max_age", "version: STSv1\nmode: enforce\nmx: a.test\n", "error: no max_age"},
		{"max_age not digits", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n", "error: line 4: max_age"},
		{"max_age too long", "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 12345678901\n", "error: line 4: max_age"},
		{"bad mx", "version: STSv1\nmode: enforce\nmx: *.*.a.test\nmax_age: 60\n", "error: line 3: mx"},
		{"single-label mx", "version: STSv1\nmode: enforce\nmx: localhost\nmax_age: 60\n", "error: line 3: mx"},
		{"not key: value", "version: STSv1\nan HTML page\n", "error: line 2: not"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.text))
			var got string
			if err != nil {
				got = "error: " + err.Error()
			} else {
				got = string(p.Mode) + " [" + strings.Join(p.MX, " ") + "] " + p.MaxAge.String()
			}
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("Parse = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	p := &Policy{Mode: Enforce, MX: []string{"mail.example.com", "*.example.net"}, MaxAge: time.Hour}
	for host, want := range map[string]bool{
		"mail.example.com":      true,
		"MAIL.example.com.":     true,
		"mx1.example.net":       true,
		"example.net":           false, // the wildcard needs one label
		"a.b.example.net":       false, // and only one
		"mail.example.com.evil": false,
		"other.example.com":     false,
		".example.net":          false,
	} {
		if got := p.Match(host); got != want {
			t.Errorf("Match(%s) = %v, want %v", host, got, want)
		}
	}
}

func TestParseRecord(t *testing.T) {
	tests := []struct {
		txts []string
		want string // id, or "error: ..."
	}{
		{[]string{"v=STSv1; id=20160831085700Z;"}, "20160831085700Z"},
		{[]string{"v=STSv1;id=abc"}, "abc"},
		{[]string{"v=spf1 -all", "v=STSv1; id=x1; ext=y"}, "x1"},
		{[]string{"v=spf1 -all"}, "error: no MTA-STS TXT record"},
		{nil, "error: no MTA-STS TXT record"},
		{[]string{"v=STSv1; id=a", "v=STSv1; id=b"}, "error: 2 MTA-STS TXT records"},
		{[]string{"v=STSv1;"}, "error: TXT record has no id"},
		{[]string{"v=STSv1; id=not-alnum"}, `error: TXT record id "not-alnum"`},
		{[]string{"v=STSv1; id=" + strings.Repeat("a", 33)}, "error: TXT record id"},
		{[]string{"v=STSv1x; id=a"}, `error: TXT record starts "v=STSv1x"`},
	}
	for _, tt := range tests {
		id, err := ParseRecord(tt.txts)
		got := id
		if err != nil {
			got = "error: " + err.Error()
		}
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("ParseRecord(%q) = %s, want %s", tt.txts, got, tt.want)
		}
	}
}
