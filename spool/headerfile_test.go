package spool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const goldenPath = "testdata/1tXyZa-000AbC-Qr-H"

// golden returns the golden -H file with line 2 ("mxgate UID GID") made
// to name this process's uid and gid, as WriteHeaderFile does.
func golden(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(b), "\n", 3)
	return lines[0] + "\n" + fmt.Sprintf("mxgate %d %d", os.Getuid(), os.Getgid()) + "\n" + lines[2]
}

func goldenEnvelope() *Envelope {
	return &Envelope{
		ID:               "1tXyZa-000AbC-Qr",
		Sender:           "alice@example.test",
		Recipients:       []string{"bob@example.test", "carol@example.test", "dave@example.test"},
		Done:             []string{"bob@example.test", "carol@example.test"},
		Received:         time.Unix(1714557607, 78082000),
		HeloName:         "mx.example.net",
		HostAddress:      "192.0.2.1:58241",
		ReceivedProtocol: "esmtp",
		BodyLinecount:    3,
		Frozen:           time.Unix(1714560000, 0),
		ManualThaw:       true,
		FirstFailed:      time.Unix(1714557700, 0),
		NextTry:          time.Unix(1714558600, 0),
		Attempts:         2,
		Headers: []Header{
			{'P', "Received: from mx.example.net ([192.0.2.1]:58241 helo=mx.example.net)\n\tby mx.example.test with esmtp (mxgate)\n\tid 1tXyZa-000AbC-Qr\n\tfor bob@example.test; Wed, 01 May 2024 10:00:07 +0000\n"},
			{' ', "Subject: quarterly report\n"},
			{'I', "Message-Id: <20240501100007.abc@example.net>\n"},
			{'F', "From: Alice <alice@example.test>\n"},
			{'T', "To: bob@example.test,\n carol@example.test, dave@example.test\n"},
			{'*', "X-Spam-Flag: YES\n"},
			{' ', "Date: Wed, 01 May 2024 10:00:05 +0000\n"},
			{' ', "X-Long: " + strings.Repeat("x", 1000) + "\n"},
		},
	}
}

func TestWriteHeaderFileGolden(t *testing.T) {
	var buf bytes.Buffer
	env := goldenEnvelope()
	// Done is written sorted whatever its order in memory.
	env.Done = []string{"carol@example.test", "bob@example.test", "carol@example.test"}
	if err := WriteHeaderFile(&buf, env); err != nil {
		t.Fatal(err)
	}
	if want := golden(t); buf.String() != want {
		t.Errorf("WriteHeaderFile differs from %s:\n got:\n%s\nwant:\n%s", goldenPath, buf.String(), want)
	}
}

func TestParseHeaderFileGolden(t *testing.T) {
	got, err := ParseHeaderFile(strings.NewReader(golden(t)))
	if err != nil {
		t.Fatal(err)
	}
	want := goldenEnvelope()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseHeaderFile(%s):\n got %+v\nwant %+v", goldenPath, got, want)
	}
	if got.HeaderSize() != 1398 {
		t.Errorf("HeaderSize = %d, want 1398 (all headers but the deleted one)", got.HeaderSize())
	}
	if p := got.Pending(); !reflect.DeepEqual(p, []string{"dave@example.test"}) {
		t.Errorf("Pending = %q", p)
	}
}

func TestHeaderFileRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		env  Envelope
	}{
		{"minimal bounce", Envelope{ID: "000001-000000-00", Received: time.Unix(0, 0)}},
		{"ipv6 host, bare ip, first time", Envelope{
			ID: "1tXyZa-000AbC-Qr", Recipients: []string{"a@b", "\"x y\"@c"}, Received: time.Unix(1714557607, 999999000),
			HostAddress: "[2001:db8::1]:25", DeliverFirstTime: true, HeloName: "[2001:db8::1] (weird helo)",
		}},
		{"held by a rate limit", Envelope{ID: "1tXyZa-000AbC-Qr", Recipients: []string{"a@b"}, Received: time.Unix(1, 0),
			Frozen: time.Unix(2, 0), Hold: "per-domain:example.test"}},
		{"bare ip", Envelope{ID: "zzzzzz-zzzzzz-zz", Recipients: []string{"a@b"}, Received: time.Unix(1, 0), HostAddress: "192.0.2.7"}},
		{"big header", Envelope{ID: "1tXyZa-000AbC-Qr", Recipients: []string{"a@b"}, Received: time.Unix(1, 0),
			Headers: []Header{{' ', "X-Big: " + strings.Repeat("y", 100000) + "\n"}, {'B', "Bcc: a@b\n"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteHeaderFile(&buf, &tc.env); err != nil {
				t.Fatal(err)
			}
			got, err := ParseHeaderFile(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatalf("%v in:\n%s", err, buf.String())
			}
			if !got.Received.Equal(tc.env.Received) {
				t.Errorf("Received = %v, want %v", got.Received, tc.env.Received)
			}
			got.Received = tc.env.Received
			if !reflect.DeepEqual(*got, tc.env) {
				t.Errorf("round trip:\n got %+v\nwant %+v", *got, tc.env)
			}
		})
	}
}

func TestWriteHeaderFileRefuses(t *testing.T) {
	tests := []struct {
		name   string
		modify func(e *Envelope)
		want   string
	}{
		{"newline in recipient", func(e *Envelope) { e.Recipients[1] = "evil@x\n-frozen 1" }, "recipient"},
		{"CR in sender", func(e *Envelope) { e.Sender = "a@b\r" }, "sender"},
		{"newline in done", func(e *Envelope) { e.Done = []string{"a\nb"} }, "done recipient"},
		{"empty recipient", func(e *Envelope) { e.Recipients = append(e.Recipients, "") }, "empty address"},
		{"newline in helo", func(e *Envelope) { e.HeloName = "x\ny" }, "HELO"},
		{"bad host", func(e *Envelope) { e.HostAddress = "mx.example:25" }, "host address"},
		{"invalid id", func(e *Envelope) { e.ID = "../../etc/passwd" }, "invalid message id"},
		{"no received time", func(e *Envelope) { e.Received = time.Time{} }, "no received time"},
		{"bad header type", func(e *Envelope) { e.Headers[0].Type = 'x' }, "invalid type"},
		{"header without newline", func(e *Envelope) { e.Headers[1].Text = "Subject: x" }, "newline"},
		{"unfolded continuation", func(e *Envelope) { e.Headers[1].Text = "Subject: x\nFrom: y\n" }, "not folded"},
		{"blank line in header", func(e *Envelope) { e.Headers[1].Text = "Subject: x\n\nbody\n" }, "not folded"},
		{"header without name", func(e *Envelope) { e.Headers[1].Text = "no colon here\n" }, "Name:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := goldenEnvelope()
			tc.modify(env)
			var buf bytes.Buffer
			err := WriteHeaderFile(&buf, env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one mentioning %q", err, tc.want)
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes despite the error", buf.Len())
			}
		})
	}
}

// replaceLine returns s with its 1-based line n replaced by repl.
func replaceLine(s string, n int, repl string) string {
	lines := strings.Split(s, "\n")
	lines[n-1] = repl
	return strings.Join(lines, "\n")
}

func TestParseHeaderFileErrors(t *testing.T) {
	g := golden(t)
	headerStart := strings.Index(g, "\n\n") + 2
	tests := []struct {
		name  string
		input string
		line  int
		want  string
	}{
		{"empty", "", 1, "file ends"},
		{"bad id", replaceLine(g, 1, "../../etc/passwd-H"), 1, "not a message id"},
		{"id without -H", replaceLine(g, 1, "1tXyZa-000AbC-Qr-D"), 1, "not a message id"},
		{"owner", replaceLine(g, 2, "mxgate root 0"), 2, "login uid gid"},
		{"sender not bracketed", replaceLine(g, 3, "alice@example.test"), 3, "sender"},
		{"time", replaceLine(g, 4, "1714557607"), 4, "epoch"},
		{"negative time", replaceLine(g, 4, "-1 0"), 4, "epoch"},
		{"usec", replaceLine(g, 5, "-received_time_usec 78082"), 5, "bad option"},
		{"unknown option", replaceLine(g, 6, "-spam_score 5.0"), 6, "unknown option"},
		{"duplicate option", replaceLine(g, 7, "-helo_name again"), 7, "twice"},
		{"host without brackets", replaceLine(g, 7, "-host_address 192.0.2.1:58241"), 7, "host address"},
		{"host not ip", replaceLine(g, 7, "-host_address [mx]:25"), 7, "host address"},
		{"host port", replaceLine(g, 7, "-host_address [192.0.2.1]:99999"), 7, "host address"},
		{"empty protocol", replaceLine(g, 8, "-received_protocol"), 8, "bad option"},
		{"linecount sign", replaceLine(g, 9, "-body_linecount +3"), 9, "bad option"},
		{"linecount huge", replaceLine(g, 9, "-body_linecount 99999999999"), 9, "bad option"},
		{"body size sign", replaceLine(g, 9, "-body_size -3"), 9, "bad option"},
		{"body size empty", replaceLine(g, 9, "-body_size"), 9, "bad option"},
		{"empty hold", replaceLine(g, 11, "-mxgate_hold"), 11, "bad option"},
		{"flag with value", replaceLine(g, 11, "-manual_thaw yes"), 11, "bad option"},
		{"attempts leading zero", replaceLine(g, 14, "-retry_attempts 02"), 14, "bad option"},
		{"tree flags", replaceLine(g, 15, "NX bob@example.test"), 15, "tree node"},
		{"tree empty address", replaceLine(g, 15, "NY "), 15, "tree node"},
		{"tree too short", replaceLine(g, 16, "NY carol@example.test"), 17, "tree node"},
		{"count", replaceLine(g, 17, "three"), 17, "recipient count"},
		{"count too small", replaceLine(g, 17, "2"), 20, "blank line"},
		{"count too big", replaceLine(g, 17, "1000000000000"), 21, "empty"},
		{"empty recipient", replaceLine(g, 19, ""), 19, "empty"},
		{"carriage return", replaceLine(g, 3, "<a@b\r>"), 3, "carriage return"},
		{"truncated in options", g[:strings.Index(g, "-retry_next")+5], 13, "no newline"},
		{"length too short", g[:headerStart] + "025  Subject: quarterly report\n", 22, "does not end with a newline"},
		{"length not canonical", g[:headerStart] + "0026  Subject: quarterly report\n", 22, "bad length prefix"},
		{"length two digits", g[:headerStart] + "26  Subject: quarterly report\n", 22, "bad length prefix"},
		{"length 10^12", g[:headerStart] + "1000000000000  Subject: x\n", 22, "declares 1000000000000 bytes but the file ends after 11"},
		{"length overflow", g[:headerStart] + "99999999999999999999  Subject: x\n", 22, "too long"},
		{"bad type", g[:headerStart] + "026x Subject: quarterly report\n", 22, "type letter"},
		{"no space", g[:headerStart] + "026 Subject: quarterly report\n", 22, "type letter"},
		{"header unfolded", g[:headerStart] + "026  Subject: quarterly\nreport\n", 22, "not folded"},
		{"header no newline", g[:headerStart] + "025  Subject: quarterly report", 22, "newline"},
		{"trailing junk", g + "junk\n", 34, "length prefix"},
		{"second header line number", g[:headerStart] + "026  Subject: quarterly report\n010  X: y\n\tz\nw\n026  Subject: quarterly report\n", 23, "not folded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, err := ParseHeaderFile(strings.NewReader(tc.input))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error = %v (env %+v), want a *ParseError", err, env)
			}
			if pe.Line != tc.line || !strings.Contains(pe.Msg, tc.want) {
				t.Errorf("error = %q, want line %d mentioning %q", err, tc.line, tc.want)
			}
			if env != nil {
				t.Errorf("envelope returned with an error: %+v", env)
			}
		})
	}
}

func TestParseHeaderFileTreeShapes(t *testing.T) {
	// A balanced tree as Exim writes it: pre-order, left then right.
	tree := "YY m@x\nYN f@x\nNN a@x\nNN z@x\n"
	in := "1tXyZa-000AbC-Qr-H\nexim 93 93\n<>\n1714557607 1\n" + tree + "1\nq@x\n\n"
	env, err := ParseHeaderFile(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"m@x", "f@x", "a@x", "z@x"}; !reflect.DeepEqual(env.Done, want) {
		t.Errorf("Done = %q, want %q", env.Done, want)
	}
	if env.Sender != "" || len(env.Headers) != 0 {
		t.Errorf("Sender %q, %d headers", env.Sender, len(env.Headers))
	}
}

func TestHeaderType(t *testing.T) {
	for name, want := range map[string]byte{
		"Received": 'P', "FROM": 'F', "to": 'T', "Cc": 'C', "bcc": 'B', "Message-ID": 'I',
		"Reply-To": 'R', "Sender": 'S', "Subject": ' ', "Resent-From": ' ', "X-Spam-Flag": ' ',
	} {
		if got := HeaderType(name); got != want {
			t.Errorf("HeaderType(%q) = %q, want %q", name, got, want)
		}
	}
}

func FuzzParseHeaderFile(f *testing.F) {
	// The seed corpus lives in testdata/fuzz/FuzzParseHeaderFile.
	f.Fuzz(func(t *testing.T, in []byte) {
		env, err := ParseHeaderFile(bytes.NewReader(in))
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 {
				t.Fatalf("error without a line number: %v", err)
			}
			return
		}
		// Whatever parses must be written back, and read again the same.
		var b1, b2 bytes.Buffer
		if err := WriteHeaderFile(&b1, env); err != nil {
			t.Fatalf("parsed envelope not writable: %v", err)
		}
		env2, err := ParseHeaderFile(bytes.NewReader(b1.Bytes()))
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, b1.Bytes())
		}
		if err := WriteHeaderFile(&b2, env2); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b1.Bytes(), b2.Bytes()) {
			t.Fatalf("not stable:\n%q\n%q", b1.Bytes(), b2.Bytes())
		}
	})
}

func TestFuzzCorpusPresent(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzParseHeaderFile/*")
	if err != nil || len(files) < 5 {
		t.Fatalf("seed corpus: %d files (%v)", len(files), err)
	}
}

func TestHeaderNameValue(t *testing.T) {
	tests := []struct {
		text, name, value, unfolded string
	}{
		{"Subject: hello\n", "Subject", "hello", "hello"},
		{"Subject:hello\n", "Subject", "hello", "hello"},
		{"Subject :  two spaces \n", "Subject", " two spaces ", "two spaces"},
		{"Subject:\ttab\n", "Subject", "\ttab", "tab"},
		{"To: a@example.test,\n\tb@example.test\n", "To", "a@example.test,\n\tb@example.test", "a@example.test,\tb@example.test"},
		{"X-Empty:\n", "X-Empty", "", ""},
		{"X-Colons: a: b: c\n", "X-Colons", "a: b: c", "a: b: c"},
		{"no colon\n", "", "", ""},
		{"", "", "", ""},
	}
	for _, tt := range tests {
		h := Header{Type: ' ', Text: tt.text}
		if got := h.Name(); got != tt.name {
			t.Errorf("Name(%q) = %q, want %q", tt.text, got, tt.name)
		}
		if got := h.Value(); got != tt.value {
			t.Errorf("Value(%q) = %q, want %q", tt.text, got, tt.value)
		}
		if got := h.UnfoldedValue(); got != tt.unfolded {
			t.Errorf("UnfoldedValue(%q) = %q, want %q", tt.text, got, tt.unfolded)
		}
	}
}
