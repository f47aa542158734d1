package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxgate/internal/tlstest"
)

// base is the least a config needs, two lines; a test's text follows it,
// from line 3.
const base = "relay.domains = [\"example.test\"]\ndownstream.url = \"smtp://127.0.0.1:2600\"\n"

// TestDidYouMean: an unknown key names the key meant, by spelling or by
// table; a key near nothing gets no guess.
func TestDidYouMean(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"typo in a table", "[smtp]\nmax_recipents = 5\n",
			`e.toml:4: unknown key "smtp.max_recipents" (did you mean smtp.max_recipients?)`},
		{"key in the wrong table", "domains = [\"a.test\"]\n",
			`e.toml:3: unknown key "domains" (did you mean relay.domains or route.domains?)`},
		{"top-level key of a table", "max_message_size = \"10M\"\n",
			`e.toml:3: unknown key "max_message_size" (did you mean smtp.max_message_size?)`},
		{"misspelt table", "[smpt]\nmax_errors = 3\n",
			`e.toml:3: unknown key "smpt" (did you mean smtp?)`},
		{"in an array of tables", "[[route]]\ndomains = [\"b.test\"]\nurl = \"smtp://127.0.0.1:25\"\nconect_timeout = \"5s\"\n",
			`e.toml:6: unknown key "route[0].conect_timeout" (did you mean route.connect_timeout?)`},
		{"nothing near", "frobnicate = 1\n",
			`e.toml:3: unknown key "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("e.toml", []byte(base+tt.text))
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse error = %v, want %s", err, tt.want)
			}
		})
	}
}

// TestHostBits: a CIDR with host bits set loads as its network, with a
// warning at its line; a clean one or a bare address gets none.
func TestHostBits(t *testing.T) {
	text := base + "relay.trusted_networks = [\n  \"192.168.1.1/24\",\n  \"10.0.0.0/8\",\n  \"192.0.2.7\",\n  \"2001:db8::1/64\",\n]\n"
	c, err := Parse("w.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"w.toml:4: warning: 192.168.1.1/24 has host bits set: it means 192.168.1.0/24",
		"w.toml:7: warning: 2001:db8::1/64 has host bits set: it means 2001:db8::/64",
	}
	if got := warnings(c); got != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if got := c.Relay.TrustedNetworks[0].String(); got != "192.168.1.0/24" {
		t.Errorf("trusted_networks[0] = %s, want 192.168.1.0/24", got)
	}
}

func warnings(c *Config) string {
	var s []string
	for _, w := range c.Warnings {
		s = append(s, w.String())
	}
	return strings.Join(s, "\n")
}

// TestTLSFiles: the certificate and key are loaded at Load, so a missing
// file, a key of another certificate or an expired certificate is an
// error at the line that names the file, and one about to expire a
// warning.
func TestTLSFiles(t *testing.T) {
	goodCert, goodKey := testdataDir+"cert.pem", testdataDir+"key.pem"
	soonCert, soonKey := tlstest.FilesUntil(t, time.Now().Add(3*24*time.Hour), "mx.example.test")
	// Truncated to the minute, 30m while the test takes under 30 seconds.
	lastCert, lastKey := tlstest.FilesUntil(t, time.Now().Add(30*time.Minute+30*time.Second), "mx.example.test")
	oldCert, oldKey := tlstest.FilesUntil(t, time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC), "mx.example.test")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name, cert, key string
		err, warning    string // "" for none
		warningEnd      string // how the warning ends; "" for any way
	}{
		{"good", goodCert, goodKey, "", "", ""},
		{"missing certificate", missing, goodKey,
			fmt.Sprintf(`t.toml:4: key "tls.cert": open %s: no such file or directory`, missing), "", ""},
		{"missing key", goodCert, missing,
			fmt.Sprintf(`t.toml:5: key "tls.key": open %s: no such file or directory`, missing), "", ""},
		{"key of another certificate", goodCert, testdataDir + "other-key.pem",
			fmt.Sprintf(`t.toml:5: key "tls.key": %sother-key.pem with certificate %s: tls: private key does not match public key`, testdataDir, goodCert), "", ""},
		{"certificate file holds a key", goodKey, goodKey,
			fmt.Sprintf(`t.toml:4: key "tls.cert": %s holds no PEM CERTIFICATE`, goodKey), "", ""},
		{"expired", oldCert, oldKey,
			fmt.Sprintf(`t.toml:4: key "tls.cert": certificate %s expired on 2020-01-02`, oldCert), "", ""},
		{"expires soon", soonCert, soonKey, "",
			fmt.Sprintf(`t.toml:4: warning: certificate %s expires on `, soonCert), ", in 2d23h"},
		{"expires within the hour", lastCert, lastKey, "",
			fmt.Sprintf(`t.toml:4: warning: certificate %s expires on `, lastCert), ", in 30m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := fmt.Sprintf("%s[tls]\ncert = %s\nkey = %s\n", base, quote(tt.cert), quote(tt.key))
			c, err := Parse("t.toml", []byte(text))
			switch {
			case tt.err != "":
				if err == nil || err.Error() != tt.err {
					t.Errorf("Parse error = %v, want %s", err, tt.err)
				}
				return
			case err != nil:
				t.Fatalf("Parse error = %v", err)
			}
			got := warnings(c)
			if (tt.warning == "") != (got == "") || !strings.HasPrefix(got, tt.warning) || !strings.HasSuffix(got, tt.warningEnd) {
				t.Errorf("warnings = %q, want one starting %q, ending %q", got, tt.warning, tt.warningEnd)
			}
		})
	}
	info, err := ReadCertificate(goodCert, goodKey)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(info.Names, ","); got != "mx1.example.test,mx.example.test" {
		t.Errorf("names = %s, want mx1.example.test,mx.example.test", got)
	}
}

// TestPrintUnits: sizes and durations print as the file wrote them, and
// defaults in their natural unit; either way the text loads back to the
// same values.
func TestPrintUnits(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string // lines String must contain
	}{
		{"defaults", "", []string{
			"max_message_size = '50MiB'", "command_timeout = '5m'", "shutdown_timeout = '30s'",
			"max_size = '500KiB'", "positive_ttl = '1d'"}},
		{"decimal size", "smtp.max_message_size = \"50MB\"\n", []string{"max_message_size = '50MB'"}},
		{"Exim size", "smtp.max_message_size = \"50M\"\n", []string{"max_message_size = '50M'"}},
		{"bytes", "smtp.max_message_size = 52428800\n", []string{"max_message_size = 52428800\n"}},
		{"natural as written", "smtp.max_message_size = \"20MiB\"\n", []string{"max_message_size = '20MiB'"}},
		{"seconds", "smtp.command_timeout = \"300s\"\n", []string{"command_timeout = '300s'"}},
		{"weeks", "queue.timeout_frozen_after = \"2w\"\n", []string{"timeout_frozen_after = '2w'"}},
		{"zero switches off", "queue.delay_warning = 0\n", []string{"delay_warning = '0'"}},
		{"zero takes the default", "smtp.data_timeout = \"0s\"\n", []string{"data_timeout = '5m'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("u.toml", []byte(base+tt.text))
			if err != nil {
				t.Fatal(err)
			}
			text := c.String()
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("String() lacks %q:\n%s", w, text)
				}
			}
			back, err := Parse("u.toml", []byte(text))
			if err != nil {
				t.Fatalf("Parse(String()): %v", err)
			}
			if back.String() != text {
				t.Errorf("printed twice differs:\n%s\nthen\n%s", text, back.String())
			}
		})
	}
}

// TestPrintChanged: a value changed after Load prints as what it is now,
// not as the file wrote what it was.
func TestPrintChanged(t *testing.T) {
	c, err := Parse("u.toml", []byte(base+"smtp.max_message_size = \"50MB\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.SMTP.MaxMessageSize = 10 << 20
	if text := c.String(); !strings.Contains(text, "max_message_size = '10MiB'") {
		t.Errorf("String() after a change:\n%s", text)
	}
}

// TestDKIMKeyFile: a signing key file that is not there is an error at
// its line, not a failure of the first signature.
func TestDKIMKeyFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "k.pem")
	text := fmt.Sprintf("%s[[msgauth.dkim_sign]]\ndomain = \"example.test\"\nselector = \"s\"\nkey_file = %s\n", base, quote(missing))
	_, err := Parse("k.toml", []byte(text))
	want := fmt.Sprintf(`k.toml:6: key "msgauth.dkim_sign[0].key_file": open %s: no such file or directory`, missing)
	if err == nil || err.Error() != want {
		t.Errorf("Parse error = %v, want %s", err, want)
	}
	if _, err := os.Stat(testdataDir + "dkim.pem"); err != nil {
		t.Fatal(err)
	}
}

// TestFileWarnings: a recipients list or a maildir_users file that is not
// there is read again at each lookup, so it does not stop a start; it is
// a warning, saying what it does to mail.
func TestFileWarnings(t *testing.T) {
	dir := t.TempDir()
	list, users := filepath.Join(dir, "recipients"), filepath.Join(dir, "userdomains")
	text := fmt.Sprintf("relay.domains = [\"example.test\"]\n[downstream]\nurl = \"maildir://%s\"\nverify_recipients = \"file:%s\"\nmaildir_layout = \"{user}/{local}\"\nmaildir_users = %s\n",
		dir, list, quote(users))
	c, err := Parse("f.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("f.toml:4: warning: stat %s: no such file or directory: every recipient of this store gets 451 until it can be read\n"+
		"f.toml:6: warning: stat %s: no such file or directory: deliveries that need {user} are deferred until it can be read", list, users)
	if got := warnings(c); got != want {
		t.Errorf("warnings:\n%s\nwant:\n%s", got, want)
	}
	for _, f := range []string{list, users} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := Parse("f.toml", []byte(text)); err != nil || c.Warnings != nil {
		t.Errorf("with the files there: %v, warnings %v", err, c.Warnings)
	}
}
