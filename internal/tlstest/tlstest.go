// Package tlstest gives tests throwaway TLS certificates: self-signed,
// as a tls.Certificate for a server a test starts itself or as PEM files
// for the config's [tls] cert and key (written afresh over the old ones
// for a renewal); or issued by a throwaway CA that
// a verifying client is told to trust.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certificate returns a fresh self-signed ECDSA P-256 server certificate,
// valid from an hour ago for two hours. Its subject is the first of
// hosts; each host is one of its names, an IP address as an IP address
// name. No client verifies it: clients in tests skip verification, or
// test that verifying fails.
func Certificate(tb testing.TB, hosts ...string) tls.Certificate {
	tb.Helper()
	key := newKey(tb)
	tmpl := leafTemplate(tb, hosts)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// CA is a throwaway certificate authority, for tests of clients that
// verify: they trust Pool, and servers present certificates it issued.
type CA struct {
	Cert *x509.Certificate
	Pool *x509.CertPool // holds Cert alone
	key  *ecdsa.PrivateKey
}

// NewCA returns a fresh CA named name, valid from an hour ago for two
// hours.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Pool: pool, key: key}
}

// Certificate returns a server certificate for hosts (as the package's
// Certificate names them) issued by ca, its chain the leaf then ca's
// certificate, as a server sends it.
func (ca *CA) Certificate(tb testing.TB, hosts ...string) tls.Certificate {
	tb.Helper()
	key := newKey(tb)
	tmpl := leafTemplate(tb, hosts)
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key}
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

// leafTemplate is a server certificate for hosts, the first its subject.
func leafTemplate(tb testing.TB, hosts []string) *x509.Certificate {
	tb.Helper()
	if len(hosts) == 0 {
		tb.Fatal("tlstest: no host names")
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return tmpl
}

// Files writes Certificate(tb, hosts...) as PEM files in a directory of
// the test's own and returns their names, for [tls] cert and key.
func Files(tb testing.TB, hosts ...string) (certFile, keyFile string) {
	tb.Helper()
	return FilesUntil(tb, time.Now().Add(time.Hour), hosts...)
}

// FilesUntil is Files with a certificate that expires at notAfter (valid
// from an hour before it, or before now if that is earlier), for tests of
// what expired and expiring certificates do.
func FilesUntil(tb testing.TB, notAfter time.Time, hosts ...string) (certFile, keyFile string) {
	tb.Helper()
	key := newKey(tb)
	tmpl := leafTemplate(tb, hosts)
	tmpl.NotAfter = notAfter
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	if notAfter.Before(time.Now()) {
		tmpl.NotBefore = notAfter.Add(-time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePEM(tb, certFile, keyFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key})
	return certFile, keyFile
}

// WriteFiles writes a fresh Certificate(tb, hosts...) over certFile and
// keyFile (a renewal, when they exist) and returns its DER form, what a
// client sees as the peer certificate.
func WriteFiles(tb testing.TB, certFile, keyFile string, hosts ...string) []byte {
	tb.Helper()
	cert := Certificate(tb, hosts...)
	writePEM(tb, certFile, keyFile, cert)
	return cert.Certificate[0]
}

// writePEM writes cert and its key as PEM files.
func writePEM(tb testing.TB, certFile, keyFile string, cert tls.Certificate) {
	tb.Helper()
	kb, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		tb.Fatal(err)
	}
}
