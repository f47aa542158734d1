package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func score(f float64) *float64 { return &f }

func TestParseFilters(t *testing.T) {
	const base = "hostname = \"h\"\nrelay.domains = [\"h\"]\ndownstream.url = \"smtp://h:25\"\n"
	tests := []struct {
		name  string
		extra string
		spamd Spamd
		clamd Clamd
	}{
		{"absent: off, defaults filled", "",
			Spamd{MaxSize: 512000, RejectScore: 15, Timeout: Duration(30 * time.Second), OnError: "tempfail"},
			Clamd{OnVirus: "reject", OnError: "tempfail", Timeout: Duration(30 * time.Second)}},
		{"one address as a string, integer scores", "[spamd]\naddress = \"127.0.0.1:783\"\ntag_score = 3\nreject_score = 20\n",
			Spamd{Address: StringList{"127.0.0.1:783"}, MaxSize: 512000, TagScore: score(3), RejectScore: 20,
				Timeout: Duration(30 * time.Second), OnError: "tempfail"},
			Clamd{OnVirus: "reject", OnError: "tempfail", Timeout: Duration(30 * time.Second)}},
		{"negative scores", "spamd.tag_score = -2.5\nspamd.quarantine_score = -1.0\nspamd.reject_score = -0.5\n",
			Spamd{MaxSize: 512000, TagScore: score(-2.5), QuarantineScore: score(-1), RejectScore: -0.5,
				Timeout: Duration(30 * time.Second), OnError: "tempfail"},
			Clamd{OnVirus: "reject", OnError: "tempfail", Timeout: Duration(30 * time.Second)}},
		{"explicit zero reject score is kept", "spamd.reject_score = 0.0\nspamd.tag_score = 0\n",
			Spamd{MaxSize: 512000, TagScore: score(0), RejectScore: 0, Timeout: Duration(30 * time.Second), OnError: "tempfail"},
			Clamd{OnVirus: "reject", OnError: "tempfail", Timeout: Duration(30 * time.Second)}},
		{"subject tag", "[spamd]\nsubject_tag = \"***SPAM***\"\n",
			Spamd{MaxSize: 512000, RejectScore: 15, SubjectTag: "***SPAM***", Timeout: Duration(30 * time.Second), OnError: "tempfail"},
			Clamd{OnVirus: "reject", OnError: "tempfail", Timeout: Duration(30 * time.Second)}},
		{"clamd over IPv6", "clamd = { address = [\"[::1]:3310\", \"clamd.example.test:3310\"], timeout = \"5s\" }\n",
			Spamd{MaxSize: 512000, RejectScore: 15, Timeout: Duration(30 * time.Second), OnError: "tempfail"},
			Clamd{Address: StringList{"[::1]:3310", "clamd.example.test:3310"}, OnVirus: "reject", OnError: "tempfail",
				Timeout: Duration(5 * time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("f.toml", []byte(base+tt.extra))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Spamd, tt.spamd) {
				t.Errorf("Spamd = %+v, want %+v", c.Spamd, tt.spamd)
			}
			if !reflect.DeepEqual(c.Clamd, tt.clamd) {
				t.Errorf("Clamd = %+v, want %+v", c.Clamd, tt.clamd)
			}
			if c.Spamd.Enabled() != (len(tt.spamd.Address) > 0) || c.Clamd.Enabled() != (len(tt.clamd.Address) > 0) {
				t.Errorf("Enabled: spamd %v, clamd %v", c.Spamd.Enabled(), c.Clamd.Enabled())
			}
			back, err := Parse("f.toml", []byte(c.String()))
			if err != nil {
				t.Fatalf("Parse(String()): %v\n%s", err, c)
			}
			if !reflect.DeepEqual(back.Spamd, c.Spamd) || !reflect.DeepEqual(back.Clamd, c.Clamd) {
				t.Errorf("Parse(String()) changed the filters:\n%s", back)
			}
		})
	}
}

func TestParseFiltersErrors(t *testing.T) {
	const base = "hostname = \"h\"\nrelay.domains = [\"h\"]\ndownstream.url = \"smtp://h:25\"\n"
	const forms = `want HOST:PORT such as "127.0.0.1:783" or unix:/PATH such as "unix:/run/spamd.sock"`
	tests := []struct{ name, extra, want string }{
		{"score as string", "[spamd]\nreject_score = \"15\"\n",
			`e.toml:5: key "spamd.reject_score": expected a number, got string "15"`},
		{"optional score as string", "spamd.tag_score = \"5.0\"\n",
			`e.toml:4: key "spamd.tag_score": expected a number, got string "5.0"`},
		{"nan", "spamd.reject_score = nan\n",
			`e.toml:4: key "spamd.reject_score": expected a finite number, got NaN`},
		{"infinity", "spamd.quarantine_score = -inf\n",
			`e.toml:4: key "spamd.quarantine_score": expected a finite number, got -Inf`},
		{"tag above reject", "[spamd]\ntag_score = 16\n",
			`e.toml:5: key "spamd.tag_score": 16.0 is above spamd.reject_score 15.0: no message would be marked as spam`},
		{"quarantine above reject", "[spamd]\nreject_score = 10\nquarantine_score = 10.5\n",
			`e.toml:6: key "spamd.quarantine_score": 10.5 is above spamd.reject_score 10.0: no message would be quarantined`},
		{"quarantine below tag", "[spamd]\ntag_score = 6\nquarantine_score = 5.5\n",
			`e.toml:6: key "spamd.quarantine_score": 5.5 is below spamd.tag_score 6.0: mail not marked as spam would be quarantined`},
		{"address without port", "spamd.address = [\"127.0.0.1\"]\n",
			`e.toml:4: key "spamd.address": invalid address "127.0.0.1" (` + forms + `)`},
		{"relative socket", "spamd.address = [\n  \"127.0.0.1:783\",\n  \"unix:spamd.sock\",\n]\n",
			`e.toml:6: key "spamd.address": invalid address "unix:spamd.sock": the socket path must be absolute (` + forms + `)`},
		{"address twice", "clamd.address = [\"127.0.0.1:3310\", \"127.0.0.1:3310\"]\n",
			`e.toml:4: key "clamd.address": address "127.0.0.1:3310" is listed twice`},
		{"bad port", "clamd.address = \"127.0.0.1:clamd\"\n",
			`e.toml:4: key "clamd.address": invalid port "clamd" in address "127.0.0.1:clamd"`},
		{"bad host", "clamd.address = \"bad_host:3310\"\n",
			`e.toml:4: key "clamd.address": invalid host "bad_host" in address "bad_host:3310"`},
		{"on_virus", "[clamd]\non_virus = \"drop\"\n",
			`e.toml:5: key "clamd.on_virus": invalid value "drop" (want "reject" or "quarantine")`},
		{"on_error", "spamd.on_error = \"defer\"\n",
			`e.toml:4: key "spamd.on_error": invalid value "defer" (want "tempfail" or "accept")`},
		{"negative max size", "spamd.max_size = -1\n",
			`e.toml:4: key "spamd.max_size": must not be negative, got -1`},
		{"report not a boolean", "spamd.report = \"yes\"\n",
			`e.toml:4: key "spamd.report": expected a boolean, got string "yes"`},
		{"subject tag on two lines", "[spamd]\nsubject_tag = \"[SPAM]\\r\\nBcc: x@example.net\"\n",
			`e.toml:5: key "spamd.subject_tag": invalid character '\r' in "[SPAM]\r\nBcc: x@example.net": want printable ASCII on one line`},
		{"subject tag not ASCII", "spamd.subject_tag = \"[Späm]\"\n",
			`e.toml:4: key "spamd.subject_tag": invalid character 'ä' in "[Späm]": want printable ASCII on one line`},
		{"subject tag with a trailing space", "spamd.subject_tag = \"[SPAM] \"\n",
			`e.toml:4: key "spamd.subject_tag": "[SPAM] " starts or ends with a space: the tag is followed by one space of its own`},
		{"subject tag too long", "spamd.subject_tag = \"" + strings.Repeat("S", 101) + "\"\n",
			`e.toml:4: key "spamd.subject_tag": 101 characters, want at most 100`},
		{"subject tag not a string", "spamd.subject_tag = true\n",
			`e.toml:4: key "spamd.subject_tag": expected a string, got boolean true`},
		{"unknown key", "[clamd]\nstream_max_length = \"25M\"\n",
			`e.toml:5: unknown key "clamd.stream_max_length"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("e.toml", []byte(base+tt.extra))
			if err == nil || err.Error() != tt.want {
				t.Errorf("error = %v, want %q", err, tt.want)
			}
		})
	}
}
