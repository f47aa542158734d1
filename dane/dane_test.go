package dane

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/miekg/dns"

	"mxgate/internal/tlstest"
)

// tlsa is the TLSA record for cert with usage, selector and matching type.
func tlsa(t *testing.T, usage, sel, mt uint8, cert *x509.Certificate) dns.RR {
	t.Helper()
	b := cert.Raw
	if sel == selSPKI {
		b = cert.RawSubjectPublicKeyInfo
	}
	switch mt {
	case matchSHA256:
		h := sha256.Sum256(b)
		b = h[:]
	case matchSHA512:
		h := sha512.Sum512(b)
		b = h[:]
	}
	rr, err := dns.NewRR(fmt.Sprintf("_25._tcp.mx.example.test. 60 IN TLSA %d %d %d %s", usage, sel, mt, hex.EncodeToString(b)))
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

func parse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerify(t *testing.T) {
	ca := tlstest.NewCA(t, "Example CA")
	other := tlstest.NewCA(t, "Other CA")
	issued := ca.Certificate(t, "mx.example.test")
	chain := []*x509.Certificate{parse(t, issued.Certificate[0]), ca.Cert}
	leaf := chain[0]
	wrongName := ca.Certificate(t, "elsewhere.test")
	wrongChain := []*x509.Certificate{parse(t, wrongName.Certificate[0]), ca.Cert}
	self := parse(t, tlstest.Certificate(t, "anything.test").Certificate[0])

	tests := []struct {
		name    string
		records []dns.RR
		chain   []*x509.Certificate
		err     error // nil: verified
	}{
		{"EE SPKI SHA-256", []dns.RR{tlsa(t, 3, 1, 1, leaf)}, chain, nil},
		{"EE cert SHA-512", []dns.RR{tlsa(t, 3, 0, 2, leaf)}, chain, nil},
		{"EE cert full", []dns.RR{tlsa(t, 3, 0, 0, leaf)}, chain, nil},
		{"EE ignores names and issuer", []dns.RR{tlsa(t, 3, 1, 1, self)}, []*x509.Certificate{self}, nil},
		{"EE of another key", []dns.RR{tlsa(t, 3, 1, 1, self)}, chain, ErrNoMatch},
		{"TA SPKI SHA-256", []dns.RR{tlsa(t, 2, 1, 1, ca.Cert)}, chain, nil},
		{"TA cert full", []dns.RR{tlsa(t, 2, 0, 0, ca.Cert)}, chain, nil},
		{"TA checks the name", []dns.RR{tlsa(t, 2, 1, 1, ca.Cert)}, wrongChain, ErrNoMatch},
		{"TA not in the chain sent", []dns.RR{tlsa(t, 2, 1, 1, other.Cert)}, chain, ErrNoMatch},
		{"one of several matches", []dns.RR{tlsa(t, 3, 1, 1, self), tlsa(t, 2, 1, 1, ca.Cert)}, chain, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(Usable(tt.records), "mx.example.test.", tt.chain)
			if (err == nil) != (tt.err == nil) || (tt.err != nil && !errors.Is(err, tt.err)) {
				t.Errorf("Verify = %v, want %v", err, tt.err)
			}
		})
	}
}

// Usable keeps what RFC 7672 lets an SMTP client use and nothing it
// cannot check.
func TestUsable(t *testing.T) {
	sha := hex.EncodeToString(make([]byte, 32))
	tests := []struct {
		record string
		usable bool
	}{
		{"3 1 1 " + sha, true},
		{"2 0 1 " + sha, true},
		{"3 1 2 " + hex.EncodeToString(make([]byte, 64)), true},
		{"3 1 0 3059301306", true},
		{"0 1 1 " + sha, false}, // PKIX-TA
		{"1 1 1 " + sha, false}, // PKIX-EE
		{"3 2 1 " + sha, false}, // unknown selector
		{"3 1 3 " + sha, false}, // unknown matching type
		{"3 1 1 abcd", false},   // SHA-256 of the wrong length
		{"3 1 2 " + sha, false}, // SHA-512 of the wrong length
	}
	for _, tt := range tests {
		rr, err := dns.NewRR("_25._tcp.mx.example.test. 60 IN TLSA " + tt.record)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(Usable([]dns.RR{rr})) == 1; got != tt.usable {
			t.Errorf("Usable(%s) = %v, want %v", tt.record, got, tt.usable)
		}
	}
}
