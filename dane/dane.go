// Package dane checks a TLS server's certificate against the TLSA records
// of its name (DANE for SMTP, RFC 7672): DANE-TA(2) and DANE-EE(3)
// records, selectors Cert(0) and SPKI(1), matching types Full(0),
// SHA2-256(1) and SHA2-512(2). It decides nothing about when TLSA records
// count: the caller uses them only from an answer its validating resolver
// vouched for (the AD bit), and asks for TLS only when Usable leaves some.
package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// Certificate usages, selectors and matching types (RFC 6698, 7218).
const (
	usageDANETA = 2
	usageDANEEE = 3
	selCert     = 0
	selSPKI     = 1
	matchFull   = 0
	matchSHA256 = 1
	matchSHA512 = 2
)

// Record is one usable TLSA record, its association data decoded.
type Record struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte
}

// Usable returns the records an SMTP client can use (RFC 7672 3.1: usages
// 2 and 3 only; PKIX-TA(0) and PKIX-EE(1) are not for SMTP), skipping
// unknown selectors and matching types and data that is not hex or of the
// wrong length for its digest. None usable means DANE does not apply.
func Usable(rrs []dns.RR) []Record {
	var out []Record
	for _, rr := range rrs {
		t, ok := rr.(*dns.TLSA)
		if !ok || (t.Usage != usageDANETA && t.Usage != usageDANEEE) ||
			(t.Selector != selCert && t.Selector != selSPKI) {
			continue
		}
		data, err := hex.DecodeString(t.Certificate)
		if err != nil || len(data) == 0 {
			continue
		}
		switch {
		case t.MatchingType == matchFull:
		case t.MatchingType == matchSHA256 && len(data) == sha256.Size:
		case t.MatchingType == matchSHA512 && len(data) == sha512.Size:
		default:
			continue
		}
		out = append(out, Record{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
	}
	return out
}

// matches reports whether cert matches r's selector and data.
func (r Record) matches(cert *x509.Certificate) bool {
	var b []byte
	switch r.Selector {
	case selCert:
		b = cert.Raw
	case selSPKI:
		b = cert.RawSubjectPublicKeyInfo
	default:
		return false
	}
	switch r.MatchingType {
	case matchFull:
		return bytes.Equal(b, r.Data)
	case matchSHA256:
		h := sha256.Sum256(b)
		return bytes.Equal(h[:], r.Data)
	case matchSHA512:
		h := sha512.Sum512(b)
		return bytes.Equal(h[:], r.Data)
	}
	return false
}

// ErrNoMatch is a server certificate chain that no record matches.
var ErrNoMatch = errors.New("no TLSA record matches the server's certificate chain")

// Verify checks chain, the certificates the server sent (leaf first), for
// host (the MX host name, the name its TLSA records were found under)
// against records (from Usable). A DANE-EE record must match the leaf
// itself; its names and dates are not checked (RFC 7672 3.1.1). A
// DANE-TA record must match a certificate the server sent, which then
// anchors the verification of the leaf for host, dates included (3.1.2).
// One match is enough.
func Verify(records []Record, host string, chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("the server sent no certificate")
	}
	if len(records) == 0 {
		return errors.New("no usable TLSA record")
	}
	leaf := chain[0]
	var taErr error
	for _, r := range records {
		switch r.Usage {
		case usageDANEEE:
			if r.matches(leaf) {
				return nil
			}
		case usageDANETA:
			for _, ta := range chain {
				if !r.matches(ta) {
					continue
				}
				err := verifyTA(leaf, chain[1:], ta, host)
				if err == nil {
					return nil
				}
				taErr = err
			}
		}
	}
	if taErr != nil {
		return fmt.Errorf("%w: the trust anchor it names does not validate the certificate for %s: %w", ErrNoMatch, host, taErr)
	}
	return ErrNoMatch
}

// verifyTA verifies leaf for host with ta as the only root (Go accepts a
// leaf that is itself the root).
func verifyTA(leaf *x509.Certificate, rest []*x509.Certificate, ta *x509.Certificate, host string) error {
	roots := x509.NewCertPool()
	roots.AddCert(ta)
	inter := x509.NewCertPool()
	for _, c := range rest {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{
		DNSName:       strings.TrimSuffix(host, "."),
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	_, err := leaf.Verify(opts)
	return err
}
