// Package dkimtest gives tests a DKIM signing key: an Ed25519 key written
// as the PKCS#8 PEM file [[msgauth.dkim_sign]] key_file reads, with the
// TXT record that publishes it.
package dkimtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// Key is a signing key and where it is.
type Key struct {
	Private ed25519.PrivateKey
	File    string // PKCS#8 PEM, in a directory of the test's
}

// New makes a key in a temporary directory of tb.
func New(tb testing.TB) Key {
	tb.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	file := filepath.Join(tb.TempDir(), "dkim.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return Key{Private: key, File: file}
}

// Record is the key's DKIM TXT record; it fits one TXT string.
func (k Key) Record() string {
	return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k.Private.Public().(ed25519.PublicKey))
}
