package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"mxgate/header"
	"mxgate/spool"
)

// split runs the DATA pipeline's parsing on data handed over in pieces of
// chunk bytes (so CRLFs are cut at every position): header block, then the
// body with LF line ends.
func split(data []byte, chunk, max int) (headers []spool.Header, blank bool, body []byte, bare bool, err error) {
	var r io.Reader = bytes.NewReader(data)
	if chunk > 0 {
		r = &chunkReader{data: data, n: chunk}
	}
	le := &lineEnds{r: r}
	br := bufio.NewReaderSize(le, 16)
	headers, first, blank, err := header.ReadFrom(br, max)
	if err != nil {
		return nil, false, nil, le.Bare, err
	}
	rest, err := io.ReadAll(br)
	return headers, blank, append(first, rest...), le.Bare, err
}

type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(c.n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// TestSplit: lineEnds under header.ReadFrom, as DATA reads a message, on
// input cut at every position. header's tests cover the header block's
// own rules; these, the line ends and the body handed over.
func TestSplit(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		headers []string // Type + Text
		blank   bool
		body    string
		bare    bool
	}{
		{
			name:    "plain",
			in:      "From: a@b\r\nSubject: hi\r\n there\r\n\r\nbody\r\n",
			headers: []string{"FFrom: a@b\n", " Subject: hi\n there\n"},
			blank:   true, body: "body\n",
		},
		{
			// The line that ends the block is body: split joins it to the
			// rest.
			name:    "non-header line ends the block",
			in:      "Subject: s\r\nnot a header\r\nmore\r\n",
			headers: []string{" Subject: s\n"},
			body:    "not a header\nmore\n",
		},
		{
			name:    "header cut off at the end",
			in:      "Subject: s",
			headers: []string{" Subject: s\n"},
		},
		{
			name: "empty message",
			in:   "",
		},
		{
			name:    "bare LF",
			in:      "Subject: s\n\r\nb\nc\r\n",
			headers: []string{" Subject: s\n"}, blank: true, body: "b\nc\n", bare: true,
		},
		{
			name:    "bare CR dropped",
			in:      "Subject: s\r\n\r\nb\rc\r\r\n.\r",
			headers: []string{" Subject: s\n"}, blank: true, body: "bc\n.", bare: true,
		},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1, 2, 3} {
			headers, blank, body, bare, err := split([]byte(tt.in), chunk, maxHeaderBlock)
			if err != nil {
				t.Fatalf("%s (chunk %d): %v", tt.name, chunk, err)
			}
			var got []string
			for _, h := range headers {
				got = append(got, string(h.Type)+h.Text)
			}
			if strings.Join(got, "|") != strings.Join(tt.headers, "|") || blank != tt.blank || string(body) != tt.body || bare != tt.bare {
				t.Errorf("%s (chunk %d):\n got headers %q blank %v body %q bare %v\nwant headers %q blank %v body %q bare %v",
					tt.name, chunk, got, blank, body, bare, tt.headers, tt.blank, tt.body, tt.bare)
			}
		}
	}
}

// TestSplitHeaderLimit: the limit counts the header block as stored, with
// LF line ends, not as it came with CRLF.
func TestSplitHeaderLimit(t *testing.T) {
	in := "A: " + strings.Repeat("a", 20) + "\r\n\r\n" // 24 bytes + blank line stored
	for _, tt := range []struct {
		max  int
		want error
	}{{25, nil}, {24, header.ErrTooBig}, {10, header.ErrTooBig}} {
		if _, _, _, _, err := split([]byte(in), 0, tt.max); !errors.Is(err, tt.want) {
			t.Errorf("max %d: err %v, want %v", tt.max, err, tt.want)
		}
	}
	long := "A: " + strings.Repeat("a", 100000) // one line, no end
	if _, _, _, _, err := split([]byte(long), 0, 1000); !errors.Is(err, header.ErrTooBig) {
		t.Errorf("one long line: err %v, want %v", err, header.ErrTooBig)
	}
}

func TestLineEndsReadError(t *testing.T) {
	le := &lineEnds{r: iotest.TimeoutReader(strings.NewReader("ab\r"))}
	if _, err := io.ReadAll(le); !errors.Is(err, iotest.ErrTimeout) {
		t.Errorf("err %v, want the reader's error passed on", err)
	}
}

// FuzzLineEnds: lineEnds, converting in the reader's own buffer, against
// the rule a byte at a time (CRLF and bare LF end a line, a bare CR is
// dropped), read in pieces of every size.
func FuzzLineEnds(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, chunk, size uint8) {
		var want []byte
		wantBare := false
		for i := 0; i < len(data); i++ {
			switch c := data[i]; {
			case c == '\r' && i+1 < len(data) && data[i+1] == '\n':
				want = append(want, '\n')
				i++
			case c == '\r':
				wantBare = true
			case c == '\n':
				want = append(want, '\n')
				wantBare = true
			default:
				want = append(want, c)
			}
		}
		le := &lineEnds{r: &chunkReader{data: data, n: int(chunk%16) + 1}}
		got, err := io.ReadAll(bufio.NewReaderSize(le, 16+int(size)))
		if err != nil || !bytes.Equal(got, want) || le.Bare != wantBare {
			t.Fatalf("%q: got %q, bare %v, %v; want %q, bare %v", data, got, le.Bare, err, want, wantBare)
		}
	})
}

func TestReceivedHeader(t *testing.T) {
	when := time.Date(2025, 11, 24, 10, 0, 0, 0, time.FixedZone("", 3600))
	tests := []struct {
		name string
		ri   ReceivedInfo
		want string
	}{
		{
			name: "one recipient",
			ri: ReceivedInfo{Helo: "client.test", IP: "192.0.2.1", Hostname: "mx.example.test", With: "ESMTPS",
				ID: "1tXyZa-000AbC-Qr", Sender: "a@client.test", Recipients: []string{"b@example.test"}, Time: when},
			want: "Received: from client.test ([192.0.2.1])\n\tby mx.example.test with ESMTPS id 1tXyZa-000AbC-Qr\n" +
				"\t(envelope-from <a@client.test>)\n\tfor <b@example.test>; Mon, 24 Nov 2025 10:00:00 +0100\n",
		},
		{
			name: "host name",
			ri: ReceivedInfo{Helo: "client.test", Name: "mail.client.test", IP: "192.0.2.1", Hostname: "mx.example.test", With: "ESMTP",
				ID: "1tXyZa-000AbC-Qr", Sender: "a@client.test", Recipients: []string{"b@example.test"}, Time: when},
			want: "Received: from client.test (mail.client.test [192.0.2.1])\n\tby mx.example.test with ESMTP id 1tXyZa-000AbC-Qr\n" +
				"\t(envelope-from <a@client.test>)\n\tfor <b@example.test>; Mon, 24 Nov 2025 10:00:00 +0100\n",
		},
		{
			name: "null sender, two recipients, comment characters",
			ri: ReceivedInfo{Helo: "h", IP: "2001:db8::1", Hostname: "mx", With: "SMTP",
				ID: "1tXyZa-000AbC-Qr", Sender: `"a(b)\\c"@x`, Recipients: []string{"b@x", "c@x"}, Time: when},
			want: "Received: from h ([2001:db8::1])\n\tby mx with SMTP id 1tXyZa-000AbC-Qr\n" +
				"\t(envelope-from <\"a\\(b\\)\\\\\\\\c\"@x>); Mon, 24 Nov 2025 10:00:00 +0100\n",
		},
	}
	for _, tt := range tests {
		h := Received(tt.ri)
		if h.Type != 'P' || h.Text != tt.want {
			t.Errorf("%s:\n got %c %q\nwant P %q", tt.name, h.Type, h.Text, tt.want)
		}
	}
}

func TestSafeHelo(t *testing.T) {
	for in, want := range map[string]string{
		"client.test":            "client.test",
		"[192.0.2.1]":            "[192.0.2.1]",
		"[IPv6:2001:db8::1]":     "[IPv6:2001:db8::1]",
		"a(b);c\r\x00é":          "a?b??c????",
		strings.Repeat("a", 300): strings.Repeat("a", 255),
	} {
		if got := SafeHelo(in); got != want {
			t.Errorf("SafeHelo(%q) = %q, want %q", in, got, want)
		}
	}
}

// hasBareLineEnd reports whether data holds a CR not followed by LF or an
// LF not preceded by CR.
func hasBareLineEnd(data []byte) bool {
	for i, c := range data {
		if c == '\r' && (i+1 == len(data) || data[i+1] != '\n') {
			return true
		}
		if c == '\n' && (i == 0 || data[i-1] != '\r') {
			return true
		}
	}
	return false
}

func FuzzSplit(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		const max = 256
		headers, blank, body, bare, err := split(data, int(chunk%8), max)
		want := hasBareLineEnd(data)
		if errors.Is(err, header.ErrTooBig) {
			// Reading stopped early: what was seen may not hold the
			// bare line end, but a bare one seen must be real.
			if bare && !want {
				t.Fatalf("bare = true for %q", data)
			}
			return
		}
		if bare != want {
			t.Fatalf("bare = %v, want %v for %q", bare, want, data)
		}
		if err != nil {
			t.Fatalf("split(%q): %v", data, err)
		}
		var got strings.Builder
		for _, h := range headers {
			if spool.HeaderType(strings.TrimRight(strings.SplitN(h.Text, ":", 2)[0], " \t")) != h.Type {
				t.Fatalf("header %q has type %q", h.Text, h.Type)
			}
			if !strings.HasSuffix(h.Text, "\n") || !header.IsFieldStart([]byte(h.Text)) {
				t.Fatalf("header %q is not a field ending in LF", h.Text)
			}
			got.WriteString(h.Text)
		}
		if blank {
			got.WriteByte('\n')
		}
		got.Write(body)
		if strings.Contains(got.String(), "\r") {
			t.Fatalf("output of %q holds a CR: %q", data, got.String())
		}
		if bare {
			return
		}
		// CRLF-only input comes back whole, in LF form; only a header cut
		// off by the end of the message gains its LF.
		lf := strings.ReplaceAll(string(data), "\r\n", "\n")
		cutOff := !strings.HasSuffix(lf, "\n") && len(body) == 0 && got.String() == lf+"\n"
		if got.String() != lf && !cutOff {
			t.Fatalf("round trip of %q:\n got %q\nwant %q", data, got.String(), lf)
		}
	})
}
