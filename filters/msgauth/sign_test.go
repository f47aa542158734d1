package msgauth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mxgate/spool"
)

func writePEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSigner signs with RSA (PKCS#1) and Ed25519 (PKCS#8) keys and has the
// gateway's own verifier check the result against the published keys.
func TestSigner(t *testing.T) {
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edDER, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	z := testZone()
	z.txt["ed.test"] = nil
	z.txt["sel2._domainkey.ed.test"] = []string{dkimRecord(edPub, "ed25519")}
	server := startDNS(t, z)
	s, err := NewSigner([]SignKey{
		{Domain: "Example.test", Selector: "sel1", KeyFile: writePEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(testKey()))},
		{Domain: "ed.test", Selector: "sel2", KeyFile: writePEM(t, "PRIVATE KEY", edDER)},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		from     string
		wantSign bool
		wantDKIM string // the dkim part of the verifier's A-R
	}{
		{"rsa", "example.test", true, "dkim=pass header.d=example.test header.s=sel1"},
		{"parent domain's key", "mail.example.test", true, "dkim=pass header.d=example.test header.s=sel1"},
		{"ed25519", "ed.test", true, "dkim=pass header.d=ed.test header.s=sel2"},
		{"no key for the domain", "other.test", false, "dkim=none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := message(t, letter(tt.from)+"Regards,\n  Alice  \n", "alice@"+tt.from, "h", "192.0.2.1")
			h, ok, err := s.Sign(m)
			if err != nil || ok != tt.wantSign {
				t.Fatalf("Sign = %v, %v; want signed=%v", ok, err, tt.wantSign)
			}
			if ok {
				if !strings.HasPrefix(h.Text, "DKIM-Signature: ") || !strings.HasSuffix(h.Text, "\n") || strings.Contains(h.Text, "\r") {
					t.Fatalf("header %q: want one LF-terminated DKIM-Signature field", h.Text)
				}
				if !strings.Contains(h.Text, "c=relaxed/relaxed") || !strings.Contains(h.Text, "h=From:Subject:To") {
					t.Errorf("header %q: want c=relaxed/relaxed and h=From:Subject:To", h.Text)
				}
				m.Headers = append([]spool.Header{h}, m.Headers...)
			}
			v, err := New(Options{AuthservID: "mx.example.test", Resolvers: []string{server}}).Check(context.Background(), m)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(v.Headers[0].Text, tt.wantDKIM+";") {
				t.Errorf("verifier says %q, want %q", v.Headers[0].Text, tt.wantDKIM)
			}
		})
	}
}

func TestNewSignerErrors(t *testing.T) {
	tests := []struct {
		name string
		file func(t *testing.T) string
		want string
	}{
		{"missing file", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope.pem") }, "DKIM key for example.test: open "},
		{"not PEM", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "k.pem")
			os.WriteFile(p, []byte("hello"), 0o600)
			return p
		}, "k.pem: no PEM block"},
		{"not a key", func(t *testing.T) string { return writePEM(t, "PRIVATE KEY", []byte("junk")) }, "not a PKCS#1 or PKCS#8 private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSigner([]SignKey{{Domain: "example.test", Selector: "s", KeyFile: tt.file(t)}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// BenchmarkCheck is the latency SPF + DKIM + DMARC add to a message, with
// a loopback DNS server (so mostly the cost of the lookups' round trips
// and one RSA-2048 verification).
func BenchmarkCheck(b *testing.B) {
	server := startDNS(b, testZone())
	f := New(Options{AuthservID: "mx.example.test", Resolvers: []string{server}})
	raw := sign(b, letter("example.test"), "example.test", testKey())
	m := message(b, raw, "alice@example.test", "h", "192.0.2.1")
	for b.Loop() {
		v, err := f.Check(context.Background(), m)
		if err != nil || v.Log != "spf=pass dkim=pass:example.test dmarc=pass policy=reject" {
			b.Fatalf("%v %q", err, v.Log)
		}
	}
}
