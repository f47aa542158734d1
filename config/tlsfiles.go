package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// certExpiryWarning is how long before a certificate expires config check
// and serve start warning about it: two weekly cron runs of a renewal
// that failed, before clients notice.
const certExpiryWarning = 14 * 24 * time.Hour

// TLSFiles is a certificate and its key as the config names them.
type TLSFiles struct {
	Section   string // where they are set: "tls"
	Cert, Key string // the files

	certKey, keyKey keyPath
}

// TLSFiles lists every certificate and key pair the config names; each
// is loaded by the checks, and config check prints what it says.
func (c *Config) TLSFiles() []TLSFiles {
	var pairs []TLSFiles
	if c.TLS.Cert != "" && c.TLS.Key != "" {
		pairs = append(pairs, TLSFiles{Section: "tls", Cert: c.TLS.Cert, Key: c.TLS.Key,
			certKey: keyPath{"tls", "cert"}, keyKey: keyPath{"tls", "key"}})
	}
	for i, tc := range c.TLS.Certificates {
		if tc.Cert == "" || tc.Key == "" {
			continue // reported as incomplete by checkTLS
		}
		k := keyPath{"tls", "certificate"}.index(i)
		pairs = append(pairs, TLSFiles{Section: fmt.Sprintf("tls.certificate[%d]", i), Cert: tc.Cert, Key: tc.Key,
			certKey: k.child("cert"), keyKey: k.child("key")})
	}
	if c.Admin.Cert != "" && c.Admin.Key != "" {
		pairs = append(pairs, TLSFiles{Section: "admin", Cert: c.Admin.Cert, Key: c.Admin.Key,
			certKey: keyPath{"admin", "cert"}, keyKey: keyPath{"admin", "key"}})
	}
	return pairs
}

// CertInfo is what a loaded certificate says about itself.
type CertInfo struct {
	Names    []string // the subject's common name, then the DNS and IP names, each once
	NotAfter time.Time
}

// certError says which of the two files a problem is in.
type certError struct {
	inKey bool // the key file, else the certificate file
	err   error
}

func (e *certError) Error() string { return e.err.Error() }
func (e *certError) Unwrap() error { return e.err }

// ReadCertificate loads a PEM certificate chain and its private key as the
// server will, and checks that they belong together. The error is
// wrapped in a *certError naming the file it is about.
func ReadCertificate(certFile, keyFile string) (*CertInfo, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, &certError{err: err}
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, &certError{inKey: true, err: err}
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, &certError{err: fmt.Errorf("%s holds no PEM CERTIFICATE", certFile)}
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, &certError{err: fmt.Errorf("%s: %w", certFile, err)}
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, &certError{inKey: true, err: fmt.Errorf("%s with certificate %s: %w", keyFile, certFile, err)}
	}
	info := &CertInfo{NotAfter: leaf.NotAfter}
	add := func(n string) {
		if n != "" && !slices.Contains(info.Names, n) {
			info.Names = append(info.Names, n)
		}
	}
	add(leaf.Subject.CommonName)
	for _, n := range leaf.DNSNames {
		add(n)
	}
	for _, ip := range leaf.IPAddresses {
		add(ip.String())
	}
	return info, nil
}

// checkTLSFiles loads every certificate the config names: a missing or
// unreadable file, a key of another certificate and an expired
// certificate are errors at the key that names the file; one that expires
// within certExpiryWarning is a warning.
func (d *decoder) checkTLSFiles(c *Config) {
	now := time.Now()
	for _, p := range c.TLSFiles() {
		certKey, keyKey := p.certKey, p.keyKey
		info, err := ReadCertificate(p.Cert, p.Key)
		if err != nil {
			var ce *certError
			if errors.As(err, &ce) && ce.inKey {
				d.failKey(keyKey, -1, "%w", ce.err)
			} else {
				d.failKey(certKey, -1, "%w", err)
			}
			continue
		}
		switch left := info.NotAfter.Sub(now); {
		case left <= 0:
			d.failKey(certKey, -1, "certificate %s expired on %s", p.Cert, info.NotAfter.UTC().Format(time.DateOnly))
		case left < certExpiryWarning:
			// In hours, but for the last one, which would print as "0s".
			unit := time.Hour
			if left < time.Hour {
				unit = time.Minute
			}
			d.warn(certKey, -1, "certificate %s expires on %s, in %s", p.Cert, info.NotAfter.UTC().Format(time.DateTime), Duration(left.Truncate(unit)))
		}
	}
}
