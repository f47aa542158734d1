package submit

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"mxgate/spool"
)

// FuzzInput feeds arbitrary standard input to the header and line reader:
// the headers must always make a valid -H file, and no CRLF may reach the
// spool.
func FuzzInput(f *testing.F) {
	f.Add("Subject: x\r\nTo: a@b\r\n\r\nbody\r\n.\r\nafter\r\n", true)
	f.Add("From x\nX: y\n folded\n\n.\n", false)
	f.Add("no header\n", true)
	f.Add("A: b\r", true)
	f.Add(" leading space\n", false)
	f.Fuzz(func(t *testing.T, data string, dotEnds bool) {
		in := &input{br: bufio.NewReaderSize(strings.NewReader(data), 16), dotEnds: dotEnds}
		headers, first, err := in.readHeader()
		if err != nil {
			if err == errHeaderTooBig {
				return
			}
			t.Fatal(err)
		}
		env := &spool.Envelope{ID: "1xWDRZ-0DueYK-Gc", Recipients: []string{"a@b"}, Received: time.Unix(1e9, 0), Headers: headers}
		if err := spool.WriteHeaderFile(io.Discard, env); err != nil {
			t.Fatalf("headers %q: %v", headers, err)
		}
		total := len(first)
		for line := first; ; {
			if bytes.Contains(line, []byte("\r\n")) {
				t.Fatalf("line %q holds CRLF", line)
			}
			if line, err = in.line(8); err != nil {
				t.Fatal(err)
			}
			if line == nil {
				break
			}
			total += len(line)
		}
		if total > len(data)+1 {
			t.Fatalf("body of %d bytes from %d bytes of input", total, len(data))
		}
	})
}

// FuzzAddressList parses arbitrary To: values: every element found is one
// line, and what is no address is reported on one line too.
func FuzzAddressList(f *testing.F) {
	for _, s := range []string{
		`A <a@b>, "x, y" <c@d> (comment (nested)), g: e@f;`,
		"<@r1,@r2:u@d>",
		`"unterminated`,
		"(unterminated comment",
		"a@b,\n\tc",
		"Two Words",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		addrs, bad := addressList(v)
		for _, a := range addrs {
			if a == "" || strings.ContainsAny(a, "\r\n") {
				t.Fatalf("addressList(%q) gave %q", v, addrs)
			}
		}
		for _, b := range bad {
			if b == "" || strings.ContainsAny(b, "\r\n\t") {
				t.Fatalf("addressList(%q) gave bad %q", v, bad)
			}
		}
	})
}
