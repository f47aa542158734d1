package header

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"mxgate/spool"
)

func TestRead(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		headers []string // Type + Text
		blank   bool
		body    string // the first body line Read returns, then the rest of the input
	}{
		{
			name:    "plain",
			in:      "From: a@b\nSubject: hi\n there\n\nbody\n",
			headers: []string{"FFrom: a@b\n", " Subject: hi\n there\n"},
			blank:   true, body: "body\n",
		},
		{
			name:    "header types",
			in:      "Received: x\nTO: t\ncc: c\nBcc: b\nMessage-ID: <m@x>\nReply-To: r\nSender: s\nX-Other: o\n\n",
			headers: []string{"PReceived: x\n", "TTO: t\n", "Ccc: c\n", "BBcc: b\n", "IMessage-ID: <m@x>\n", "RReply-To: r\n", "SSender: s\n", " X-Other: o\n"},
			blank:   true,
		},
		{
			name:    "space before colon",
			in:      "Subject : old style\n\n",
			headers: []string{" Subject : old style\n"}, blank: true,
		},
		{
			name: "no header block",
			in:   "just a body line\nsecond\n",
			body: "just a body line\nsecond\n",
		},
		{
			name:    "non-header line ends the block",
			in:      "Subject: s\nnot a header\nmore\n",
			headers: []string{" Subject: s\n"},
			body:    "not a header\nmore\n",
		},
		{
			name: "leading continuation is body",
			in:   " folded first\n\nx\n",
			body: " folded first\n\nx\n",
		},
		{
			name:    "header cut off at the end",
			in:      "Subject: s",
			headers: []string{" Subject: s\n"},
		},
		{
			name:    "folded field cut off at the end",
			in:      "Subject: s\n t",
			headers: []string{" Subject: s\n t\n"},
		},
		{name: "empty message", in: ""},
		{
			name:    "colon without a name is body",
			in:      "A: b\n: no name\n",
			headers: []string{" A: b\n"},
			body:    ": no name\n",
		},
	}
	for _, tt := range tests {
		for _, size := range []int{16, 4096} {
			br := bufio.NewReaderSize(strings.NewReader(tt.in), size)
			headers, first, blank, err := ReadFrom(br, 1<<20)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			rest, _ := io.ReadAll(br)
			var got []string
			for _, h := range headers {
				got = append(got, string(h.Type)+h.Text)
			}
			body := string(first) + string(rest)
			if strings.Join(got, "|") != strings.Join(tt.headers, "|") || blank != tt.blank || body != tt.body {
				t.Errorf("%s (buffer %d):\n got headers %q blank %v body %q\nwant headers %q blank %v body %q",
					tt.name, size, got, blank, body, tt.headers, tt.blank, tt.body)
			}
		}
	}
}

func TestReadLimit(t *testing.T) {
	in := "A: " + strings.Repeat("a", 20) + "\n\n" // 24 bytes + blank line
	for _, tt := range []struct {
		max  int
		want error
	}{{25, nil}, {24, ErrTooBig}, {10, ErrTooBig}} {
		if _, _, _, err := ReadFrom(bufio.NewReaderSize(strings.NewReader(in), 16), tt.max); !errors.Is(err, tt.want) {
			t.Errorf("max %d: err %v, want %v", tt.max, err, tt.want)
		}
	}
	long := "A: " + strings.Repeat("a", 100000) // one line, no end
	if _, _, _, err := ReadFrom(bufio.NewReaderSize(strings.NewReader(long), 16), 1000); !errors.Is(err, ErrTooBig) {
		t.Errorf("one long line: err %v, want %v", err, ErrTooBig)
	}
}

func TestReadError(t *testing.T) {
	br := bufio.NewReaderSize(iotest.TimeoutReader(strings.NewReader("A: b\nC: d\n")), 16)
	br.Peek(1)
	if _, _, _, err := ReadFrom(br, 1000); !errors.Is(err, iotest.ErrTimeout) {
		t.Errorf("err %v, want the reader's error", err)
	}
}

// A LineFunc that ends with (nil, nil), as submit's does, ends the block.
func TestReadNilEnd(t *testing.T) {
	lines := []string{"A: b\n", " c\n"}
	next := func(int) ([]byte, error) {
		if len(lines) == 0 {
			return nil, nil
		}
		l := lines[0]
		lines = lines[1:]
		return []byte(l), nil
	}
	headers, body, blank, err := Read(next, 1000)
	if err != nil || len(headers) != 1 || headers[0].Text != "A: b\n c\n" || body != nil || blank {
		t.Errorf("got %q %q %v %v", headers, body, blank, err)
	}
}

func TestIsFieldStart(t *testing.T) {
	for in, want := range map[string]bool{
		"Subject: x": true, "Subject :x": true, "X\t:": true, "A:": true,
		": x": false, " Subject: x": false, "Sub ject: x": false, "Subject": false, "": false, "Sübject: x": false,
	} {
		if got := IsFieldStart([]byte(in)); got != want {
			t.Errorf("IsFieldStart(%q) = %v, want %v", in, got, want)
		}
	}
}

// FuzzRead: whatever the input, the headers make a valid -H file and
// headers plus body give back the input (less a LF added at the end).
func FuzzRead(f *testing.F) {
	f.Add("Subject: x\nTo: a@b\n\nbody\n")
	f.Add("X: y\n folded\n\n")
	f.Add("no header\n")
	f.Add("A: b")
	f.Add(" leading space\n")
	f.Fuzz(func(t *testing.T, data string) {
		if strings.ContainsAny(data, "\r\x00") {
			return // the callers' line readers take those out first
		}
		br := bufio.NewReaderSize(strings.NewReader(data), 16)
		headers, first, blank, err := ReadFrom(br, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(br)
		var b strings.Builder
		for _, h := range headers {
			b.WriteString(h.Text)
		}
		if blank {
			b.WriteByte('\n')
		}
		b.Write(first)
		b.Write(rest)
		if got := b.String(); got != data && got != data+"\n" {
			t.Fatalf("read back %q from %q", got, data)
		}
		env := &spool.Envelope{ID: "1xWDRZ-0DueYK-Gc", Recipients: []string{"a@b"}, Received: time.Unix(1e9, 0), Headers: headers}
		if err := spool.WriteHeaderFile(io.Discard, env); err != nil {
			t.Fatalf("headers %q: %v", headers, err)
		}
	})
}

func TestMessageID(t *testing.T) {
	for _, tt := range []struct {
		headers []spool.Header
		want    string
	}{
		{[]spool.Header{{Type: ' ', Text: "Subject: x\n"}, {Type: 'I', Text: "Message-ID: <abc@example.test>\n"}}, "abc@example.test"},
		{[]spool.Header{{Type: 'I', Text: "Message-Id:\n <folded@example.test> \n"}}, "folded@example.test"},
		{[]spool.Header{{Type: 'I', Text: "Message-ID: bare@example.test\n"}, {Type: 'I', Text: "Message-ID: <second@x>\n"}}, "bare@example.test"},
		{[]spool.Header{{Type: '*', Text: "Message-ID: <deleted@x>\n"}}, ""},
		{nil, ""},
	} {
		if got := MessageID(tt.headers); got != tt.want {
			t.Errorf("MessageID(%q) = %q, want %q", tt.headers, got, tt.want)
		}
	}
}
