package policysrv

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadRequest(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []Request
		err      error // after the requests
	}{
		{"one", "request=smtpd_access_policy\nprotocol_state=RCPT\nsender=\n\n",
			[]Request{{"request": "smtpd_access_policy", "protocol_state": "RCPT", "sender": ""}}, io.EOF},
		{"two on one connection", "a=1\n\nb=2=3\r\n\r\n", []Request{{"a": "1"}, {"b": "2=3"}}, io.EOF},
		{"cut short", "a=1\nb=", nil, io.ErrUnexpectedEOF},
		{"no equals", "a=1\nhello\n\n", nil, ErrMalformed},
		{"empty name", "=x\n\n", nil, ErrMalformed},
		{"empty request", "\n", nil, ErrMalformed},
		{"line too long", "a=" + strings.Repeat("x", maxLine) + "\n\n", nil, ErrMalformed},
		{"too many", strings.Repeat("a=1\n", 1) + func() string {
			var b strings.Builder
			for i := range maxAttrs + 1 {
				b.WriteString("n" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26) + "=1\n")
			}
			return b.String()
		}() + "\n", nil, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tc.in))
			for i, want := range tc.want {
				got, err := ReadRequest(r)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if len(got) != len(want) {
					t.Fatalf("request %d: %v, want %v", i, got, want)
				}
				for k, v := range want {
					if got[k] != v {
						t.Errorf("request %d: %s=%q, want %q", i, k, got[k], v)
					}
				}
			}
			if _, err := ReadRequest(r); !errors.Is(err, tc.err) {
				t.Errorf("then %v, want %v", err, tc.err)
			}
		})
	}
}

// FuzzReadRequest: no input panics, and a request read back from its
// own serialization is the same. The seeds are in
// testdata/fuzz/FuzzReadRequest: a real Postfix RCPT request, two on one
// connection, a broken line.
func FuzzReadRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in))
		for {
			req, err := ReadRequest(r)
			if err != nil {
				return
			}
			var b bytes.Buffer
			for k, v := range req {
				b.WriteString(k + "=" + v + "\n")
			}
			b.WriteString("\n")
			again, err := ReadRequest(NewReader(&b))
			if err != nil || len(again) != len(req) {
				t.Fatalf("%q read back as %q (%v)", req, again, err)
			}
		}
	})
}
