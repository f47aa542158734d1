package deliver

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

func TestNew(t *testing.T) {
	tests := []struct {
		url  string
		o    Options
		name string // Name() of the transport; "" when New must fail
		err  string
	}{
		{url: "smtp://127.0.0.1:2600", name: "smtp"},
		{url: "smtp://mail.example.test", name: "smtp"},
		{url: "smtp://[::1]:25", name: "smtp"},
		{url: "lmtp://127.0.0.1:24", name: "lmtp"},
		{url: "lmtp+unix:///run/dovecot/lmtp", name: "lmtp"},
		{url: "maildir:///var/mail", name: "maildir"},
		{url: "smtp://127.0.0.1:25", o: Options{StartTLS: "required"}, name: "smtp"},
		{url: "http://example.test", err: `downstream URL "http://example.test": unknown scheme "http" (want smtp, lmtp, lmtp+unix or maildir)`},
		{url: "smtp://", err: `downstream URL "smtp://": missing host`},
		{url: "smtp://h:25/path", err: `downstream URL "smtp://h:25/path": a smtp URL has no path (smtp://host:port)`},
		{url: "smtp://u:p@h:25", err: `downstream URL "smtp://u:p@h:25": user info, query and fragment are not supported`},
		{url: "maildir://var/mail", err: `downstream URL "maildir://var/mail": want an absolute path (maildir:///path), got host "var"`},
		{url: "maildir:relative", err: `downstream URL "maildir:relative": want scheme://host:port or scheme:///path`},
		{url: "lmtp+unix://", err: `downstream URL "lmtp+unix://": want an absolute path (lmtp+unix:///path)`},
		{url: "smtp://h:25", o: Options{StartTLS: "always"}, err: `downstream "smtp://h:25": starttls "always": want opportunistic, none or required`},
		{url: "lmtp://h:24", o: Options{CommandTimeout: -1}, err: `downstream "lmtp://h:24": negative timeout (connect 0s, command -1ns, data 0s)`},
		{url: "smtp://h:25", o: Options{Hostname: "mx\r\nRSET"}, err: `downstream "smtp://h:25": hostname "mx\r\nRSET": contains white space or control characters`},
		{url: "smtp://h:%zz", err: `downstream URL "smtp://h:%zz": parse "smtp://h:%zz": invalid port ":%zz" after host`},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			tr, err := New(tt.url, tt.o)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("New(%q) error = %v, want %q", tt.url, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q): %v", tt.url, err)
			}
			if tr.Name() != tt.name {
				t.Errorf("Name() = %q, want %q", tr.Name(), tt.name)
			}
		})
	}
}

// Defaults for what the caller left zero, and the address a bare host
// resolves to.
func TestNewDefaults(t *testing.T) {
	tests := []struct {
		url, addr, display string
	}{
		{"smtp://mail.example.test", "mail.example.test:25", "mail.example.test"},
		{"lmtp://127.0.0.1", "127.0.0.1:24", "127.0.0.1 [127.0.0.1]"},
		{"smtp://[::1]:2525", "[::1]:2525", "::1 [::1]"},
		{"lmtp+unix:///run/../run/lmtp", "/run/lmtp", "/run/lmtp"},
	}
	for _, tt := range tests {
		tr, err := New(tt.url, Options{})
		if err != nil {
			t.Fatal(err)
		}
		st := tr.(*smtpTransport)
		if st.addr != tt.addr || st.display("") != tt.display {
			t.Errorf("%s: addr %q display %q, want %q %q", tt.url, st.addr, st.display(""), tt.addr, tt.display)
		}
		o := st.o
		if o.Hostname == "" || o.ConnectTimeout != defaultConnectTimeout || o.CommandTimeout != defaultCommandTimeout ||
			o.DataTimeout != defaultDataTimeout || o.StartTLS != "opportunistic" {
			t.Errorf("%s: defaults not applied: %+v", tt.url, o)
		}
	}
	tr, _ := New("maildir:///srv/mail/", Options{})
	if root := tr.(*maildirTransport).root; root != filepath.Clean("/srv/mail") {
		t.Errorf("maildir root %q", root)
	}
}

func TestDisplayFromRemoteAddr(t *testing.T) {
	tr, _ := New("smtp://mail.example.test:25", Options{})
	st := tr.(*smtpTransport)
	for remote, want := range map[string]string{
		"192.0.2.1:25":          "mail.example.test [192.0.2.1]",
		"[2001:db8::1]:25":      "mail.example.test [2001:db8::1]",
		"[::ffff:192.0.2.1]:25": "mail.example.test [192.0.2.1]",
		"[fe80::1%eth0]:25":     "mail.example.test [fe80::1]",
		"":                      "mail.example.test",
	} {
		if got := st.display(remote); got != want {
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

// lineWriter gives the same output however the input is split across
// writes, so a CR at the end of one read and LF at the start of the next
// are still one line ending.
func TestLineWriter(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a\nb\n", "a\nb\n"},
		{"a\r\nb\r\n", "a\nb\n"},
		{"a\rb\r", "a\nb\n"},
		{"a\r\r\nb", "a\n\nb"},
		{"a\n\rb", "a\n\nb"},
		{"\r\n\r\n", "\n\n"},
		{"no newline", "no newline"},
	}
	for _, tt := range tests {
		for _, split := range []int{1, 2, 3, 64} {
			var out bytes.Buffer
			lw := &lineWriter{w: &out}
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
