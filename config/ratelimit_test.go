package config

import (
	"testing"
	"time"
)

// TestRateLimitErrors: every bad [[ratelimit]] and [greylist] value is
// refused with its file:line.
func TestRateLimitErrors(t *testing.T) {
	const base = "hostname = \"h\"\ndownstream.url = \"smtp://h:25\"\nrelay.domains = [\"h\"]\n"
	tests := []struct{ name, extra, want string }{
		{"no key", "[[ratelimit]]\nrate = \"1/1h\"\n",
			`e.toml:4: missing required key "ratelimit[0].key"`},
		{"unknown key", "[[ratelimit]]\nkey = \"helo\"\nrate = \"1/1h\"\n",
			`e.toml:5: key "ratelimit[0].key": invalid value "helo" (want "client_ip", "auth_user", "sender" or "sender_domain")`},
		{"no rate", "[[ratelimit]]\nkey = \"sender\"\n",
			`e.toml:4: missing required key "ratelimit[0].rate"`},
		{"rate without period", "[[ratelimit]]\nkey = \"sender\"\nrate = \"100\"\n",
			`e.toml:6: key "ratelimit[0].rate": invalid rate "100" (want COUNT/PERIOD such as "100/1h")`},
		{"rate zero period", "[[ratelimit]]\nkey = \"sender\"\nrate = \"100/0s\"\n",
			`e.toml:6: key "ratelimit[0].rate": invalid period in rate "100/0s" (want COUNT/PERIOD such as "100/1h", a period above 0)`},
		{"bad per", "[[ratelimit]]\nkey = \"sender\"\nrate = \"1/1h\"\nper = \"byte\"\n",
			`e.toml:7: key "ratelimit[0].per": invalid value "byte" (want "mail", "rcpt" or "conn")`},
		{"bad action", "[[ratelimit]]\nkey = \"sender\"\nrate = \"1/1h\"\naction = \"freeze\"\n",
			`e.toml:7: key "ratelimit[0].action": invalid value "freeze" (want "defer", "reject" or "hold")`},
		{"same default name", "[[ratelimit]]\nkey = \"sender\"\nrate = \"1/1h\"\n[[ratelimit]]\nkey = \"sender\"\nrate = \"5/1d\"\n",
			`e.toml:7: key "ratelimit[1].name": rate limit "sender/per_mail" is already configured as ratelimit[0]; give each a name`},
		{"override without match", "[[ratelimit]]\nkey = \"sender\"\nrate = \"1/1h\"\n[[ratelimit.override]]\nrate = \"5/1h\"\n",
			`e.toml:7: missing required key "ratelimit[0].override[0].match"`},
		{"colon in name", "[[ratelimit]]\nname = \"a:b\"\nkey = \"sender\"\nrate = \"1/1h\"\n",
			`e.toml:5: key "ratelimit[0].name": invalid name "a:b": it must be non-empty, without spaces, colons or control characters`},
		{"greylist window", "[greylist]\ndelay = \"1h\"\nretry_window = \"30m\"\n",
			`e.toml:6: key "greylist.retry_window": "30m" is not above greylist.delay "1h": no retry could pass`},
		{"greylist on_error", "[greylist]\non_error = \"reject\"\n",
			`e.toml:5: key "greylist.on_error": invalid value "reject" (want "accept" or "tempfail")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("e.toml", []byte(base+tt.extra))
			if err == nil || err.Error() != tt.want {
				t.Errorf("got %v\nwant %s", err, tt.want)
			}
		})
	}
}

// TestParseRate reads COUNT/PERIOD.
func TestParseRate(t *testing.T) {
	for _, tt := range []struct {
		in     string
		count  float64
		period time.Duration
	}{
		{"100/1h", 100, time.Hour}, {"500 / 1d", 500, 24 * time.Hour}, {"0/1m", 0, time.Minute},
	} {
		n, p, err := ParseRate(tt.in)
		if err != nil || n != tt.count || p != tt.period {
			t.Errorf("ParseRate(%q) = %v, %v, %v; want %v, %v", tt.in, n, p, err, tt.count, tt.period)
		}
	}
}
