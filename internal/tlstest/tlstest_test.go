package tlstest

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"testing"
)

func TestFiles(t *testing.T) {
	certFile, keyFile := Files(t, "mx.example.test", "localhost", "127.0.0.1")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != "mx.example.test" || !slices.Equal(c.DNSNames, []string{"mx.example.test", "localhost"}) ||
		len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("subject %q, DNS names %q, IP addresses %v", c.Subject.CommonName, c.DNSNames, c.IPAddresses)
	}
	for _, h := range []string{"mx.example.test", "localhost", "127.0.0.1"} {
		if err := c.VerifyHostname(h); err != nil {
			t.Errorf("VerifyHostname(%s): %v", h, err)
		}
	}
}

// A certificate the CA issued verifies for its names against the CA's
// pool, and for no other name.
func TestCA(t *testing.T) {
	ca := NewCA(t, "Test CA")
	cert := ca.Certificate(t, "mx.example.test")
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.Certificate) != 2 {
		t.Errorf("chain of %d certificates, want leaf and CA", len(cert.Certificate))
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "mx.example.test", Roots: ca.Pool}); err != nil {
		t.Errorf("verify: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.example.test", Roots: ca.Pool}); err == nil {
		t.Error("verified for a name it does not hold")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "mx.example.test", Roots: NewCA(t, "Other CA").Pool}); err == nil {
		t.Error("verified against another CA")
	}
}
