package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

const milterBase = "hostname = \"mx.example.test\"\nrelay.domains = [\"example.test\"]\ndownstream.url = \"smtp://h:25\"\n"

// TestMilterErrors: each bad [[milter]] value is reported on its own line,
// and the entry it belongs to is named by its index.
func TestMilterErrors(t *testing.T) {
	text := milterBase + `
[[milter]]
address = "127.0.0.1:11332"

[[milter]]
address = "inet:127.0.0.1:99999"
name = "rspamd"
on_error = "quarantine"

[[milter]]
address = "unix:run/opendkim.sock"
name = "rspamd"
eom_timeout = "-1s"

[[milter]]
name = "two words"
`
	_, err := Parse("m.toml", []byte(text))
	if err == nil {
		t.Fatal("Parse succeeded, want errors")
	}
	lines := []string{
		`m.toml:6: key "milter[0].address": invalid address "127.0.0.1:11332" (want inet:HOST:PORT such as "inet:127.0.0.1:11332" or unix:/PATH such as "unix:/run/opendkim.sock")`,
		`m.toml:9: key "milter[1].address": invalid port "99999" in address "inet:127.0.0.1:99999"`,
		`m.toml:11: key "milter[1].on_error": invalid value "quarantine" (want "tempfail", "accept" or "reject")`,
		`m.toml:14: key "milter[2].address": invalid address "unix:run/opendkim.sock": the socket path must be absolute (want inet:HOST:PORT such as "inet:127.0.0.1:11332" or unix:/PATH such as "unix:/run/opendkim.sock")`,
		`m.toml:15: key "milter[2].name": milter "rspamd" is already configured as milter[1]`,
		`m.toml:16: key "milter[2].eom_timeout": must not be negative, got "-1s"`,
		`m.toml:18: missing required key "milter[3].address"`,
		`m.toml:19: key "milter[3].name": invalid name "two words": it must be non-empty, without spaces or control characters`,
	}
	if got, want := err.Error(), strings.Join(lines, "\n"); got != want {
		t.Errorf("Parse error:\n%s\nwant:\n%s", got, want)
	}
}

func TestMilterValues(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		want  []Milter
	}{
		{"none", "", nil},
		{"defaults", "[[milter]]\naddress = \"inet:127.0.0.1:11332\"\n",
			[]Milter{{Address: "inet:127.0.0.1:11332", Name: "inet:127.0.0.1:11332", OnError: "tempfail",
				ConnectTimeout: Duration(10 * time.Second), CommandTimeout: Duration(30 * time.Second), EOMTimeout: Duration(120 * time.Second)}}},
		{"set, in order", "[[milter]]\naddress = \"inet:[::1]:8891\"\nname = \"opendkim\"\non_error = \"accept\"\nconnect_timeout = \"2s\"\ncommand_timeout = \"5s\"\neom_timeout = \"1m\"\n" +
			"[[milter]]\naddress = \"unix:/run/rspamd/milter.sock\"\nname = \"rspamd\"\non_error = \"reject\"\n",
			[]Milter{
				{Address: "inet:[::1]:8891", Name: "opendkim", OnError: "accept",
					ConnectTimeout: Duration(2 * time.Second), CommandTimeout: Duration(5 * time.Second), EOMTimeout: Duration(time.Minute)},
				{Address: "unix:/run/rspamd/milter.sock", Name: "rspamd", OnError: "reject",
					ConnectTimeout: Duration(10 * time.Second), CommandTimeout: Duration(30 * time.Second), EOMTimeout: Duration(120 * time.Second)},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("m.toml", []byte(milterBase+tt.extra))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Milters, tt.want) {
				t.Errorf("Milters = %+v\nwant %+v", c.Milters, tt.want)
			}
		})
	}
}
