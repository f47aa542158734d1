package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestCalloutErrors: every bad value of [callout] is reported with its own
// line, the bad entry of a list on the entry's line.
func TestCalloutErrors(t *testing.T) {
	path := testdataDir + "bad-callout.toml"
	_, err := Load(path)
	if err == nil {
		t.Fatalf("Load(%s) succeeded, want an error", path)
	}
	// The type error stops Parse before the value checks run, so the
	// file is checked twice: once as written, once with the type fixed.
	want := path + `:6: key "callout.enabled": expected a boolean, got string "yes"`
	if got := err.Error(); got != want {
		t.Errorf("Load(%s) error:\n%s\nwant:\n%s", path, got, want)
	}

	data, rerr := os.ReadFile(path)
	if rerr != nil {
		t.Fatal(rerr)
	}
	fixed := strings.Replace(string(data), `enabled  = "yes"`, `enabled  = true`, 1)
	_, err = Parse(path, []byte(fixed))
	if err == nil {
		t.Fatal("Parse with enabled = true succeeded, want errors")
	}
	lines := []string{
		`:7: key "callout.port": invalid port 70000 (want 1-65535)`,
		`:8: key "callout.resolver": invalid resolver "mx.example.test" (want IP:PORT such as "127.0.0.1:53" or "[::1]:53"; a bare IP means port 53)`,
		`:11: key "callout.options": unknown option "callout_random" (want "random", "postmaster", "defer_ok" or "use_postmaster")`,
		`:12: key "callout.options": option "random" is listed twice`,
		`:14: key "callout.timeout": "1m" is above callout.deadline "30s": a probe could never wait that long`,
		`:16: key "callout.exempt_domains": invalid domain name "example.net.": remove the trailing dot`,
		`:16: key "callout.exempt_domains": invalid domain name "bad_domain.test"`,
		`:17: key "callout.positive_ttl": must not be negative, got "-1h"`,
		`:18: key "callout.cache_size": must not be negative, got -5`,
	}
	want = path + strings.Join(lines, "\n"+path)
	if got := err.Error(); got != want {
		t.Errorf("Parse error:\n%s\nwant:\n%s", got, want)
	}
}

func TestCalloutValues(t *testing.T) {
	const base = "hostname = \"mx.example.test\"\nrelay.domains = [\"example.test\"]\ndownstream.url = \"smtp://h:25\"\n"
	tests := []struct {
		name  string
		extra string
		want  Callout
	}{
		{"defaults", "[callout]\nenabled = true\n",
			Callout{Enabled: true, Port: 25, Resolver: testSystemResolvers, Timeout: Duration(10e9), Deadline: Duration(30e9),
				PositiveTTL: Duration(24 * 3600e9), NegativeTTL: Duration(2 * 3600e9), CacheSize: 100000, PerHostConcurrency: 4, PerHostRate: 5}},
		{"resolver as one string, bare IP", "[callout]\nresolver = \"::1\"\nport = 2525\noptions = [\"defer_ok\"]\nexempt_domains = [\"Example.NET\"]\ntimeout = \"30s\"\n",
			Callout{Port: 2525, Resolver: StringList{"[::1]:53"}, Options: []string{"defer_ok"}, ExemptDomains: []string{"example.net"},
				Timeout: Duration(30e9), Deadline: Duration(30e9),
				PositiveTTL: Duration(24 * 3600e9), NegativeTTL: Duration(2 * 3600e9), CacheSize: 100000, PerHostConcurrency: 4, PerHostRate: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("c.toml", []byte(base+tt.extra))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Callout, tt.want) {
				t.Errorf("callout = %+v, want %+v", c.Callout, tt.want)
			}
			if got, want := c.Callout.Has("defer_ok"), len(tt.want.Options) > 0; got != want {
				t.Errorf("Has(\"defer_ok\") = %v, want %v", got, want)
			}
		})
	}
}

func TestCalloutPortZero(t *testing.T) {
	const text = "hostname = \"mx.example.test\"\nrelay.domains = [\"example.test\"]\ndownstream.url = \"smtp://h:25\"\ncallout.port = 0\n"
	_, err := Parse("p.toml", []byte(text))
	want := `p.toml:4: key "callout.port": invalid port 0 (want 1-65535)`
	if err == nil || err.Error() != want {
		t.Errorf("Parse error = %v, want %s", err, want)
	}
}
