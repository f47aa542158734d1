package config

import (
	"slices"
	"testing"
)

func TestDigestErrors(t *testing.T) {
	const base = "hostname = \"h\"\nrelay.domains = [\"h\"]\ndownstream.url = \"smtp://h:25\"\nadmin.listen = \"127.0.0.1:8025\"\n[digest]\n"
	tests := []struct{ name, extra, want string }{
		{"ftp url", "url = \"ftp://mx.example:8025\"\n",
			`e.toml:6: key "digest.url": invalid url "ftp://mx.example:8025": want http:// or https://`},
		{"no host", "url = \"https:///q\"\n",
			`e.toml:6: key "digest.url": invalid url "https:///q": no host`},
		{"query", "url = \"https://mx.example?x=1\"\n",
			`e.toml:6: key "digest.url": invalid url "https://mx.example?x=1": want scheme://host[:port][/path], without user, query or fragment`},
		{"bad schedule", "schedule = \"monthly\"\n",
			`e.toml:6: key "digest.schedule": invalid value "monthly" (want "daily", "hourly", "weekly" or "off")`},
		{"bad at", "at = \"7am\"\n",
			`e.toml:6: key "digest.at": invalid time of day "7am" (want HH:MM, e.g. "07:00")`},
		{"at past midnight", "at = \"24:00\"\n",
			`e.toml:6: key "digest.at": invalid time of day "24:00" (want HH:MM, e.g. "07:00")`},
		{"negative lifetime", "link_lifetime = \"-1d\"\n",
			`e.toml:6: key "digest.link_lifetime": must not be negative, got "-1d"`},
		{"from with brackets", "from = \"<postmaster@h>\"\n",
			`e.toml:6: key "digest.from": invalid address "<postmaster@h>" (want local@domain, without <>)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("e.toml", []byte(base+tt.extra))
			if err == nil || err.Error() != tt.want {
				t.Errorf("error = %v\nwant    %s", err, tt.want)
			}
		})
	}
}

// The links are pages of the admin listener: no listener, no digest.
func TestDigestNeedsAdmin(t *testing.T) {
	text := "hostname = \"h\"\nrelay.domains = [\"h\"]\ndownstream.url = \"smtp://h:25\"\ndigest.url = \"https://h\"\n"
	want := `e.toml:4: key "digest.url": is set but admin.listen is not: the digest's links are served by the admin listener`
	if _, err := Parse("e.toml", []byte(text)); err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant    %s", err, want)
	}
}

// A link carries the power to release mail: plain http is only quiet
// for loopback, where nothing crosses a network.
func TestDigestURLWarning(t *testing.T) {
	const base = "hostname = \"h\"\nrelay.domains = [\"h\"]\ndownstream.url = \"smtp://h:25\"\nadmin.listen = \"127.0.0.1:8025\"\n[digest]\n"
	tests := []struct{ url, warning string }{
		{"https://mx.example.test:8025", ""},
		{"http://127.0.0.1:8025", ""},
		{"http://[::1]:8025", ""},
		{"http://localhost:8025", ""},
		{"http://mx.example.test:8025", `e.toml:6: warning: url "http://mx.example.test:8025" is not https: the digest's links carry credentials in the clear`},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			c, err := Parse("e.toml", []byte(base+"url = \""+tt.url+"/\"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if c.Digest.URL != tt.url {
				t.Errorf("url = %q, want %q without the final /", c.Digest.URL, tt.url)
			}
			var got []string
			for _, w := range c.Warnings {
				got = append(got, w.String())
			}
			var want []string
			if tt.warning != "" {
				want = []string{tt.warning}
			}
			if !slices.Equal(got, want) {
				t.Errorf("warnings %q, want %q", got, want)
			}
		})
	}
}
