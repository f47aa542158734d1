// Package mailtest reads, in tests, the mail mxgate writes as a mail
// client would: a multipart message's header and its decoded parts.
package mailtest

import (
	"bufio"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
)

// Alternative parses raw as a multipart/alternative message and returns
// its header and the decoded text of each part by media type
// ("text/plain", "text/html"); quoted-printable is decoded.
func Alternative(t testing.TB, raw string) (mail.Header, map[string]string) {
	t.Helper()
	m, err := mail.ReadMessage(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	out := map[string]string{}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		out[ct] = string(b)
	}
	return m.Header, out
}
