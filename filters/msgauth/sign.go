package msgauth

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/emersion/go-msgauth/dkim"

	"mxgate/filters"
	"mxgate/spool"
)

// SignKey is one signing domain: d= and s= of its signatures, and the PEM
// file of its private key (RSA in PKCS#1 or PKCS#8, or Ed25519 in PKCS#8).
type SignKey struct {
	Domain   string
	Selector string
	KeyFile  string
}

// signedHeaders are signed when present (RFC 6376 §5.4.1's list);
// Received and trace fields are left out because relays add to them.
var signedHeaders = []string{
	"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "Content-ID", "Content-Description",
	"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc",
	"Resent-Message-ID", "List-Id", "List-Help", "List-Unsubscribe",
	"List-Subscribe", "List-Post", "List-Owner", "List-Archive", "Sender",
}

// Signer DKIM-signs mail the gateway relays for its trusted networks,
// with relaxed/relaxed canonicalisation, choosing the key by the From:
// domain.
type Signer struct {
	keys map[string]signer // by lower-case domain
}

type signer struct {
	selector string
	key      crypto.Signer
}

// NewSigner loads the keys. The error names the file that failed.
func NewSigner(keys []SignKey) (*Signer, error) {
	s := &Signer{keys: make(map[string]signer, len(keys))}
	for _, k := range keys {
		key, err := loadKey(k.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("DKIM key for %s: %w", k.Domain, err)
		}
		s.keys[strings.ToLower(k.Domain)] = signer{selector: k.Selector, key: key}
	}
	return s, nil
}

func loadKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PKCS#1 or PKCS#8 private key: %w", path, err)
	}
	cs, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type %T", path, k)
	}
	return cs, nil
}

// Sign returns the DKIM-Signature header for m, to be put on top of its
// headers, signed with the key of the From: domain or of its nearest
// parent domain that has one. ok is false when no key applies (no single
// From: address, or a domain we hold no key for).
func (s *Signer) Sign(m *filters.Message) (h spool.Header, ok bool, err error) {
	from, ferr := headerFromDomain(m.Headers)
	if ferr != nil {
		return spool.Header{}, false, nil
	}
	domain, k, found := s.keyFor(from)
	if !found {
		return spool.Header{}, false, nil
	}
	present := map[string]bool{}
	for _, h := range m.Headers {
		if name := h.Name(); name != "" && h.Type != '*' {
			present[strings.ToLower(name)] = true
		}
	}
	var keys []string
	for _, name := range signedHeaders {
		if present[strings.ToLower(name)] {
			keys = append(keys, name)
		}
	}
	rc, err := m.Open(true)
	if err != nil {
		return spool.Header{}, false, fmt.Errorf("message %s: open spooled copy: %w", m.ID, err)
	}
	defer rc.Close()
	ds, err := dkim.NewSigner(&dkim.SignOptions{
		Domain: domain, Selector: k.selector, Signer: k.key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             keys,
	})
	if err != nil {
		return spool.Header{}, false, fmt.Errorf("message %s: DKIM signer for %s: %w", m.ID, domain, err)
	}
	if _, err := io.Copy(ds, rc); err != nil {
		ds.Close()
		return spool.Header{}, false, fmt.Errorf("message %s: DKIM signing for %s: %w", m.ID, domain, err)
	}
	if err := ds.Close(); err != nil {
		return spool.Header{}, false, fmt.Errorf("message %s: DKIM signing for %s: %w", m.ID, domain, err)
	}
	sig := ds.Signature()
	if sig == "" {
		return spool.Header{}, false, errors.New("message " + string(m.ID) + ": DKIM signer produced no signature")
	}
	return spool.Header{Type: ' ', Text: strings.ReplaceAll(sig, "\r\n", "\n")}, true, nil
}

// keyFor finds the key of domain or of its nearest parent.
func (s *Signer) keyFor(domain string) (string, signer, bool) {
	for d := domain; d != ""; {
		if k, ok := s.keys[d]; ok {
			return d, k, true
		}
		_, rest, found := strings.Cut(d, ".")
		if !found {
			break
		}
		d = rest
	}
	return "", signer{}, false
}
