package deliver

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"testing/iotest"
)

func TestNew(t *testing.T) {
	tests := []struct {
		target Target
		name   string // Name() of the transport; "" when New must fail
		addr   string // where an SMTP or LMTP transport connects
		host   string // its H= without a remote address
	}{
		{target: Target{Scheme: "smtp", Host: "mail.example.test", Port: 25}, name: "smtp", addr: "mail.example.test:25", host: "mail.example.test"},
		{target: Target{Scheme: "lmtp", Host: "127.0.0.1", Port: 24}, name: "lmtp", addr: "127.0.0.1:24", host: "127.0.0.1 [127.0.0.1]"},
		{target: Target{Scheme: "smtp", Host: "::1", Port: 2525}, name: "smtp", addr: "[::1]:2525", host: "::1 [::1]"},
		{target: Target{Scheme: "lmtp+unix", Path: "/run/lmtp"}, name: "lmtp", addr: "/run/lmtp", host: "/run/lmtp"},
		{target: Target{Scheme: "maildir", Path: "/srv/mail"}, name: "maildir"},
		{target: Target{Scheme: "http", Host: "example.test", Port: 80}},
	}
	for _, tt := range tests {
		t.Run(tt.target.Scheme+" "+tt.addr, func(t *testing.T) {
			tr, err := New(tt.target, testOptions())
			if tt.name == "" {
				if want := `downstream: unknown scheme "http" (want smtp, smtps, lmtp, lmtp+unix or maildir)`; err == nil || err.Error() != want {
					t.Fatalf("New(%+v) error = %v, want %q", tt.target, err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%+v): %v", tt.target, err)
			}
			if tr.Name() != tt.name {
				t.Errorf("Name() = %q, want %q", tr.Name(), tt.name)
			}
			switch tr := tr.(type) {
			case *smtpTransport:
				if tr.p.addr != tt.addr || tr.p.display("") != tt.host {
					t.Errorf("addr %q display %q, want %q %q", tr.p.addr, tr.p.display(""), tt.addr, tt.host)
				}
				if tr.p.o != testOptions() {
					t.Errorf("options %+v, want them as given %+v", tr.p.o, testOptions())
				}
			case *Maildir:
				if tr.o.Root != tt.target.Path {
					t.Errorf("maildir root %q, want %q", tr.o.Root, tt.target.Path)
				}
			}
		})
	}
}

func TestDisplayFromRemoteAddr(t *testing.T) {
	st := newTransport(t, "smtp://mail.example.test:25", testOptions()).(*smtpTransport)
	for remote, want := range map[string]string{
		"192.0.2.1:25":          "mail.example.test [192.0.2.1]",
		"[2001:db8::1]:25":      "mail.example.test [2001:db8::1]",
		"[::ffff:192.0.2.1]:25": "mail.example.test [192.0.2.1]",
		"[fe80::1%eth0]:25":     "mail.example.test [fe80::1]",
		"":                      "mail.example.test",
	} {
		if got := st.p.display(remote); got != want {
			t.Errorf("display(%q) = %q, want %q", remote, got, want)
		}
	}
}

func TestEmptyRecipients(t *testing.T) {
	for _, u := range []string{"smtp://127.0.0.1:1", "maildir://" + t.TempDir()} {
		got := newTransport(t, u, testOptions()).Deliver(context.Background(), msg("s@example.test", "x\n"))
		if len(got) != 0 {
			t.Errorf("%s: %d results for no recipients", u, len(got))
		}
	}
}

func TestWireAddr(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"user@example.test", "user@example.test"},
		{"first.last+tag@example.test", "first.last+tag@example.test"},
		{"postmaster", "postmaster"},
		{"john doe@example.test", `"john doe"@example.test`},
		{`"john doe"@example.test`, `"john doe"@example.test`},
		{`"a\"b"@example.test`, `"a\"b"@example.test`},
		{`a"b@example.test`, `"a\"b"@example.test`},
		{`a\b@example.test`, `"a\\b"@example.test`},
		{"a@b@example.test", `"a@b"@example.test`},
		{".lead@example.test", `".lead"@example.test`},
		{"trail.@example.test", `"trail."@example.test`},
		{"two..dots@example.test", `"two..dots"@example.test`},
		{"@example.test", `""@example.test`},
		{`"unterminated@example.test`, `"\"unterminated"@example.test`},
		{"jörg@example.test", "jörg@example.test"},
	}
	for _, tt := range tests {
		if got := wireAddr(tt.in); got != tt.want {
			t.Errorf("wireAddr(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPlainLocal(t *testing.T) {
	for in, want := range map[string]string{
		`user`:       `user`,
		`"john doe"`: `john doe`,
		`"a\"b"`:     `a"b`,
		`"a\\b"`:     `a\b`,
		`""`:         ``,
		`"bad`:       `"bad`,
	} {
		if got := plainLocal(in); got != want {
			t.Errorf("plainLocal(%q) = %q, want %q", in, got, want)
		}
	}
}

// wireBody makes every line ending one CRLF and gives the same output
// however the input is split across writes, so a CR at the end of one read
// and LF at the start of the next are still one line ending.
func TestWireBodyLineEnds(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\rb\r", "a\r\nb\r\n"},
		{"a\r\r\nb", "a\r\n\r\nb"},
		{"a\n\rb", "a\r\n\r\nb"},
		{"\r\n\r\n", "\r\n\r\n"},
		{"no newline", "no newline"},
	}
	for _, tt := range tests {
		for _, split := range []int{1, 2, 3, 64} {
			var out bytes.Buffer
			lw := &wireBody{w: &out}
			r := iotest.HalfReader(strings.NewReader(tt.in))
			buf := make([]byte, split)
			for {
				n, err := r.Read(buf)
				lw.Write(buf[:n])
				if err != nil {
					break
				}
			}
			if out.String() != tt.want {
				t.Errorf("%q in writes of %d: got %q, want %q", tt.in, split, out.String(), tt.want)
			}
		}
	}
}

func TestStatusString(t *testing.T) {
	for st, want := range map[Status]string{Delivered: "Delivered", Deferred: "Deferred", Failed: "Failed", Status(7): "Status(7)"} {
		if st.String() != want {
			t.Errorf("%d: %q, want %q", int(st), st.String(), want)
		}
	}
}
