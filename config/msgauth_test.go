package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMsgAuthErrors(t *testing.T) {
	const base = "hostname = \"mx.example.test\"\nrelay.domains = [\"example.test\"]\ndownstream.url = \"smtp://h:25\"\n"
	src := base + `[msgauth]
resolver = ["127.0.0.1", "ns.example.test"]
spf_fail = "refuse"
dmarc_reject = "honor"
timeout = "-1s"

[[msgauth.dkim_sign]]
domain = "example.test"
selector = "a b"
key_file = "/k1.pem"

[[msgauth.dkim_sign]]
domain = "EXAMPLE.test"
selector = "s"
key_file = "/k2.pem"

[[msgauth.dkim_sign]]
domain = "bad_domain"

[[msgauth.dkim_sign]]
selector = "s"
key_file = "/k3.pem"
`
	_, err := Parse("m.toml", []byte(src))
	if err == nil {
		t.Fatal("Parse succeeded, want errors")
	}
	lines := []string{
		`m.toml:5: key "msgauth.resolver": invalid resolver "ns.example.test" (want IP:PORT such as "127.0.0.1:53" or "[::1]:53"; a bare IP means port 53)`,
		`m.toml:6: key "msgauth.spf_fail": invalid value "refuse" (want "stamp" or "reject")`,
		`m.toml:7: key "msgauth.dmarc_reject": invalid value "honor" (want "honour" or "stamp")`,
		`m.toml:8: key "msgauth.timeout": must not be negative, got "-1s"`,
		`m.toml:12: key "msgauth.dkim_sign[0].selector": invalid selector "a b" (want DNS labels such as "mail2026")`,
		`m.toml:13: key "msgauth.dkim_sign[0].key_file": open /k1.pem: no such file or directory`,
		`m.toml:16: key "msgauth.dkim_sign[1].domain": domain "example.test" already has a key in msgauth.dkim_sign[0]`,
		`m.toml:18: key "msgauth.dkim_sign[1].key_file": open /k2.pem: no such file or directory`,
		`m.toml:20: missing required key "msgauth.dkim_sign[2].selector"`,
		`m.toml:20: missing required key "msgauth.dkim_sign[2].key_file"`,
		`m.toml:21: key "msgauth.dkim_sign[2].domain": invalid domain name "bad_domain"`,
		`m.toml:23: missing required key "msgauth.dkim_sign[3].domain"`,
		`m.toml:25: key "msgauth.dkim_sign[3].key_file": open /k3.pem: no such file or directory`,
	}
	if got, want := err.Error(), strings.Join(lines, "\n"); got != want {
		t.Errorf("Parse error:\n%s\nwant:\n%s", got, want)
	}
}

func TestMsgAuthValues(t *testing.T) {
	const base = "hostname = \"mx.example.test\"\nrelay.domains = [\"example.test\"]\ndownstream.url = \"smtp://h:25\"\n"
	tests := []struct {
		name  string
		extra string
		want  MsgAuth
	}{
		{"defaults", "[msgauth]\nenabled = true\n",
			MsgAuth{Enabled: true, Resolver: testSystemResolvers, SPFFail: "stamp", DMARCReject: "honour", Timeout: Duration(10 * time.Second)}},
		{"resolver as one string, inline signing key", "[msgauth]\nresolver = \"::1\"\nspf_fail = \"reject\"\ndkim_sign = [{domain = \"Mail.Example.test\", selector = \"s1\", key_file = \"../testdata/config/dkim.pem\"}]\n",
			MsgAuth{Resolver: StringList{"[::1]:53"}, SPFFail: "reject", DMARCReject: "honour", Timeout: Duration(10 * time.Second),
				DKIMSign: []DKIMSign{{Domain: "mail.example.test", Selector: "s1", KeyFile: "../testdata/config/dkim.pem"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("c.toml", []byte(base+tt.extra))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.MsgAuth, tt.want) {
				t.Errorf("msgauth = %+v, want %+v", c.MsgAuth, tt.want)
			}
		})
	}
}
