package gateway

import (
	"bytes"
	"crypto/tls"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/internal/tlstest"
	"mxgate/mainlog"
	"mxgate/route"
)

// reloadTo makes a copy of ts's config, edited, the server's rules by
// Reload; retired is closed when that generation retires in its turn.
func (ts *testServer) reloadTo(edit func(*config.Config)) (retired chan struct{}, err error) {
	ts.t.Helper()
	cfg := *ts.cfg
	edit(&cfg)
	pl, err := checks.Build(&cfg, mainlog.Discard(), route.New(checks.RouteOptions(&cfg)), false)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { pl.Close() })
	retired = make(chan struct{})
	return retired, ts.srv.Reload(&cfg, pl.Pipeline, func() { close(retired) })
}

func closedWithin(ch chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// TestReloadGeneration: after Reload a new session gets the new relay
// policy while one begun before keeps the old one to its end, its
// message accepted; the old generation retires only when that session
// has ended.
func TestReloadGeneration(t *testing.T) {
	ts := newTestServer(t, nil)
	retired, err := ts.reloadTo(func(*config.Config) {})
	if err != nil {
		t.Fatal(err)
	}
	old := dial(t, ts.addr(0))
	old.greet()
	old.expect("MAIL FROM:<alice@sender.test>", "250")
	old.expect("RCPT TO:<bob@example.test>", "250")

	_, err = ts.reloadTo(func(c *config.Config) {
		c.Relay.Domains = []string{"example.test", "new.test"}
		c.Relay.TrustedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	if err != nil {
		t.Fatal(err)
	}
	if closedWithin(retired, 100*time.Millisecond) {
		t.Fatal("the old generation retired while a session still used it")
	}

	fresh := dial(t, ts.addr(0))
	fresh.greet()
	fresh.expect("MAIL FROM:<alice@sender.test>", "250")
	fresh.expect("RCPT TO:<carol@new.test>", "250")
	fresh.expect("RCPT TO:<dave@outside.test>", "250") // trusted now: relays
	fresh.expect("QUIT", "221")

	old.expect("RCPT TO:<carol@new.test>", "550")
	old.expect("RCPT TO:<dave@outside.test>", "550")
	old.expect("DATA", "354")
	old.send("Subject: t\r\n\r\nbody\r\n.\r\n")
	old.expect("", "250 2.0.0 OK id=")
	old.expect("QUIT", "221")
	if !closedWithin(retired, 10*time.Second) {
		t.Fatal("the old generation did not retire after its last session")
	}
	if ids := ts.queued(); len(ids) != 1 {
		t.Errorf("queued %v, want the old session's message", ids)
	}
}

// TestReloadIdle: with no session the replaced generation retires at once.
func TestReloadIdle(t *testing.T) {
	ts := newTestServer(t, nil)
	retired, err := ts.reloadTo(func(*config.Config) {})
	if err != nil {
		t.Fatal(err)
	}
	if closedWithin(retired, 100*time.Millisecond) {
		t.Fatal("the generation serving was retired")
	}
	if _, err := ts.reloadTo(func(*config.Config) {}); err != nil {
		t.Fatal(err)
	}
	if !closedWithin(retired, 10*time.Second) {
		t.Fatal("an unused generation was not retired")
	}
}

// served is the certificate the implicit-TLS listener shows a client
// asking for name ("" sends no SNI).
func served(t *testing.T, addr, name string) []byte {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: clientDeadline},
		Config: &tls.Config{ServerName: name, InsecureSkipVerify: true}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("TLS to %s as %q: %v", addr, name, err)
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0].Raw
}

// TestSNI: the client's server name picks the certificate holding it
// (by SAN, wildcards too), any other name or none the default; a reload
// serves renewed files to new connections, and a broken one is refused
// with the renewed certificate still served.
func TestSNI(t *testing.T) {
	dir := t.TempDir()
	file := func(n string) string { return dir + "/" + n }
	def := tlstest.WriteFiles(t, file("def.pem"), file("def.key"), "mx.example.test")
	other := tlstest.WriteFiles(t, file("other.pem"), file("other.key"), "other.test")
	wild := tlstest.WriteFiles(t, file("wild.pem"), file("wild.key"), "*.wild.test")
	ts := newTestServer(t, func(c *config.Config) {
		c.TLS = config.TLS{Cert: file("def.pem"), Key: file("def.key"), Certificates: []config.TLSCertificate{
			{Cert: file("other.pem"), Key: file("other.key")},
			{Cert: file("wild.pem"), Key: file("wild.key")},
		}}
		c.ListenTLS = []string{"127.0.0.1:0"}
	})
	addr := ts.addr(1)
	for _, tt := range []struct {
		name string
		want []byte
	}{
		{"other.test", other},
		{"OTHER.test", other},
		{"a.wild.test", wild},
		{"mx.example.test", def},
		{"unknown.test", def},
		{"", def},
	} {
		if got := served(t, addr, tt.name); !bytes.Equal(got, tt.want) {
			t.Errorf("SNI %q: got a different certificate than expected", tt.name)
		}
	}

	renewed := tlstest.WriteFiles(t, file("other.pem"), file("other.key"), "other.test")
	if _, err := ts.reloadTo(func(*config.Config) {}); err != nil {
		t.Fatal(err)
	}
	if got := served(t, addr, "other.test"); !bytes.Equal(got, renewed) {
		t.Error("after the reload other.test still gets the old certificate")
	}

	if err := os.WriteFile(file("other.key"), []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ts.reloadTo(func(*config.Config) {})
	if err == nil || !strings.Contains(err.Error(), file("other.pem")) {
		t.Errorf("reload with a broken key: %v, want an error naming %s", err, file("other.pem"))
	}
	if got := served(t, addr, "other.test"); !bytes.Equal(got, renewed) {
		t.Error("after a refused reload other.test no longer gets the renewed certificate")
	}

	// STARTTLS on the plain listener picks by SNI too.
	c := dial(t, ts.addr(0))
	c.greet()
	c.expect("STARTTLS", "220")
	tc := tls.Client(c.c, &tls.Config{ServerName: "x.wild.test", InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if got := tc.ConnectionState().PeerCertificates[0].Raw; !bytes.Equal(got, wild) {
		t.Error("STARTTLS with SNI x.wild.test: not the wildcard certificate")
	}
	tc.Close()
}
