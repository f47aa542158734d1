package deliver

import (
	"bufio"
	"bytes"
	"net/textproto"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzWireAddr checks the quoting of addresses read from the spool before
// they go into MAIL FROM / RCPT TO: the result is always one well-formed
// path that quoting again leaves alone, and quoting loses nothing.
func FuzzWireAddr(f *testing.F) {
	f.Fuzz(func(t *testing.T, a string) {
		if checkAddr(a) != nil {
			return
		}
		q := wireAddr(a)
		if wireAddr(q) != q {
			t.Fatalf("not idempotent: %q -> %q -> %q", a, q, wireAddr(q))
		}
		if a == "" {
			if q != "" {
				t.Fatalf("null path became %q", q)
			}
			return
		}
		local, domain, _ := splitAddr(a)
		qlocal, qdomain, _ := splitAddr(q)
		if qdomain != domain {
			t.Fatalf("%q: domain %q became %q", a, domain, qdomain)
		}
		if !isDotAtom(qlocal) && !isQuotedString(qlocal) {
			t.Fatalf("%q: local part %q is neither dot-atom nor quoted-string", a, qlocal)
		}
		if qlocal != local && plainLocal(qlocal) != local {
			t.Fatalf("%q: quoted %q unquotes to %q", a, qlocal, plainLocal(qlocal))
		}
	})
}

// FuzzMaildirDir checks that no recipient can name a directory outside
// root/<domain>/<local>.
func FuzzMaildirDir(f *testing.F) {
	const root = "/srv/mail"
	md := NewMaildir(MaildirOptions{Root: root, Layout: DefaultLayout, Mode: 0o700, UID: -1, GID: -1})
	f.Fuzz(func(t *testing.T, rcpt string) {
		dir, err := md.Dir(rcpt)
		if err != nil {
			return
		}
		if filepath.Clean(dir) != dir {
			t.Fatalf("%q: unclean path %q", rcpt, dir)
		}
		if filepath.Dir(filepath.Dir(dir)) != root {
			t.Fatalf("%q: %q is not root/domain/local", rcpt, dir)
		}
		for _, elem := range []string{filepath.Base(dir), filepath.Base(filepath.Dir(dir))} {
			if elem == "" || strings.HasPrefix(elem, ".") || strings.ContainsAny(elem, "/\x00") {
				t.Fatalf("%q: unsafe element %q in %q", rcpt, elem, dir)
			}
		}
	})
}

// FuzzMaildirLayout checks that with a cPanel-style layout no recipient
// names a directory outside /home/alice/mail/<domain>/<local>: the domain
// whose user the users file names is the only one placed. Seeds in
// testdata/fuzz/FuzzMaildirLayout.
func FuzzMaildirLayout(f *testing.F) {
	const root = "/home"
	md := NewMaildir(MaildirOptions{
		Root: root, Layout: "/home/{user}/mail/{domain}/{local}", Users: filepath.Join("testdata", "userdomains"),
		Delimiter: "+", Lowercase: true, Mode: 0o700, UID: -1, GID: -1,
	})
	f.Fuzz(func(t *testing.T, rcpt string) {
		dir, err := md.Dir(rcpt)
		if err != nil {
			return
		}
		if filepath.Clean(dir) != dir {
			t.Fatalf("%q: unclean path %q", rcpt, dir)
		}
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(rel, string(filepath.Separator))
		if len(parts) != 4 || (parts[0] != "alice" && parts[0] != "bob") || parts[1] != "mail" {
			t.Fatalf("%q: %q is not /home/USER/mail/domain/local", rcpt, dir)
		}
		for _, elem := range parts[2:] {
			if elem == "" || strings.HasPrefix(elem, ".") || strings.ContainsAny(elem, "/\x00") {
				t.Fatalf("%q: unsafe element %q in %q", rcpt, elem, dir)
			}
		}
	})
}

// FuzzWireBody: wireBody writes what textproto's DotWriter (which it
// replaces) writes for the same message with its line ends made LF:
// CRLF line ends, leading dots doubled, no bare CR, and the end of data
// after a line end — however the message is cut into writes.
func FuzzWireBody(f *testing.F) {
	for _, s := range []string{"", "a\n", ".\n", "..x\n.\r\n", "no end", "a\r\nb\rc\n.", "\n\n.\n"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, msg []byte, cut uint8) {
		var want bytes.Buffer
		dw := textproto.NewWriter(bufio.NewWriter(&want)).DotWriter()
		dw.Write(lfLines(msg))
		dw.Close()

		var got bytes.Buffer
		body := &wireBody{w: &got}
		n := int(cut%16) + 1
		for rest := msg; len(rest) > 0; {
			k := min(n, len(rest))
			if _, err := body.Write(rest[:k]); err != nil {
				t.Fatal(err)
			}
			rest = rest[k:]
		}
		if err := body.finish(); err != nil {
			t.Fatal(err)
		}
		got.WriteString(".\r\n")
		if got.String() != want.String() {
			t.Fatalf("%q in writes of %d: wireBody %q, DotWriter %q", msg, n, got.String(), want.String())
		}
	})
}

// lfLines is msg with every line ending (CRLF, LF or a lone CR) made one
// LF, a byte at a time: FuzzWireBody's reference for what DotWriter, which
// turns only LF into CRLF, is given.
func lfLines(msg []byte) []byte {
	var out []byte
	cr := false
	for _, c := range msg {
		switch {
		case c == '\r':
			out = append(out, '\n')
			cr = true
		case c == '\n' && cr:
			cr = false
		default:
			out = append(out, c)
			cr = false
		}
	}
	return out
}
