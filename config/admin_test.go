package config

import "testing"

// TestAdminErrors: an admin listener that would serve passwords in clear
// off this machine, and the other bad [admin] values, are refused at
// their file:line.
func TestAdminErrors(t *testing.T) {
	const base = "hostname = \"h\"\ndownstream.url = \"smtp://h:25\"\nrelay.domains = [\"h\"]\n"
	const nonLoopback = `the admin listener on a non-loopback address needs TLS: set admin.cert and admin.key (or tls.cert and tls.key), or listen on 127.0.0.1`
	tests := []struct{ name, extra, want string }{
		{"public address without TLS", "[admin]\nlisten = \"192.0.2.1:8025\"\n",
			`e.toml:5: key "admin.listen": ` + nonLoopback},
		{"every address without TLS", "[admin]\n\nlisten = \":8025\"\n",
			`e.toml:6: key "admin.listen": ` + nonLoopback},
		{"a host name without TLS", "admin.listen = \"mx.example.test:8025\"\n",
			`e.toml:4: key "admin.listen": ` + nonLoopback},
		{"bad address", "[admin]\nlisten = \"8025\"\n",
			`e.toml:5: key "admin.listen": invalid listen address "8025" (want HOST:PORT, e.g. "127.0.0.1:25" or "[::1]:25")`},
		{"cert without key", "[admin]\ncert = \"" + testdataDir + "cert.pem\"\n",
			`e.toml:5: key "admin.cert": is set but admin.key is not`},
		{"missing cert file", "[admin]\nlisten = \"192.0.2.1:8025\"\ncert = \"/nonexistent/admin.pem\"\nkey = \"" + testdataDir + "key.pem\"\n",
			`e.toml:6: key "admin.cert": open /nonexistent/admin.pem: no such file or directory`},
		{"negative timeout", "[admin]\ntimeout = \"-1s\"\n",
			`e.toml:5: key "admin.timeout": must not be negative, got "-1s"`},
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

// TestAdminTLS: which certificate the admin listener serves with, if any.
func TestAdminTLS(t *testing.T) {
	const base = "hostname = \"h\"\ndownstream.url = \"smtp://h:25\"\nrelay.domains = [\"h\"]\n"
	tlsFiles := "tls.cert = \"" + testdataDir + "cert.pem\"\ntls.key = \"" + testdataDir + "key.pem\"\n"
	adminFiles := "admin.cert = \"" + testdataDir + "cert.pem\"\nadmin.key = \"" + testdataDir + "key.pem\"\n"
	for _, tt := range []struct {
		name, extra string
		tls         bool
	}{
		{"off", "", false},
		{"loopback: plain", "admin.listen = \"127.0.0.1:8025\"\n" + tlsFiles, false},
		{"loopback v6: plain", "admin.listen = \"[::1]:8025\"\n", false},
		{"localhost: plain", "admin.listen = \"localhost:8025\"\n", false},
		{"other 127/8: plain", "admin.listen = \"127.0.0.53:8025\"\n", false},
		{"public: the [tls] certificate", "admin.listen = \"192.0.2.1:8025\"\n" + tlsFiles, true},
		{"public: its own", "admin.listen = \"192.0.2.1:8025\"\n" + adminFiles, true},
		{"loopback with its own: TLS", "admin.listen = \"127.0.0.1:8025\"\n" + adminFiles, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("e.toml", []byte(base+tt.extra))
			if err != nil {
				t.Fatal(err)
			}
			cert, key := c.AdminTLS()
			if got := cert != "" && key != ""; got != tt.tls {
				t.Errorf("AdminTLS() = %q, %q; want TLS %v", cert, key, tt.tls)
			}
		})
	}
}
