package rcptverify

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxgate/internal/peertest"
)

// startFakeUserdb serves an auth-userdb socket: greeting is what it
// says on connect, answer the reply line to a USER request (by user and
// id; "" says nothing).
func startFakeUserdb(t *testing.T, greeting string, answer func(user, id string) string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth-userdb")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	peertest.Serve(t, l, func(c net.Conn) {
		fmt.Fprint(c, greeting)
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
			if f[0] != "USER" || len(f) < 3 {
				continue // VERSION
			}
			if a := answer(f[2], f[1]); a != "" {
				fmt.Fprint(c, a+"\n")
			}
		}
	})
	return path
}

const dovecotGreeting = "VERSION\t1\t1\nSPID\t4242\n"

func TestDovecot(t *testing.T) {
	tests := []struct {
		name, greeting string
		answer         func(user, id string) string
		verdict        Verdict
		detail         string
	}{
		{"user exists", dovecotGreeting, func(u, id string) string { return "USER\t" + id + "\t" + u + "\tuid=8\thome=/x" }, Found, "USER u@example.test"},
		{"no such user", dovecotGreeting, func(_, id string) string { return "NOTFOUND\t" + id }, NotFound, "NOTFOUND"},
		{"lookup failed", dovecotGreeting, func(_, id string) string { return "FAIL\t" + id + "\treason=ldap down" }, Defer, "FAIL ldap down"},
		{"late answer first", dovecotGreeting, func(_, id string) string { return "NOTFOUND\t999\nNOTFOUND\t" + id }, NotFound, "NOTFOUND"},
		{"garbage", dovecotGreeting, func(string, string) string { return "OK\tfine" }, Defer, `unexpected reply "OK fine"`},
		{"no answer", dovecotGreeting, func(string, string) string { return "" }, Defer, "recipient verification timeout reached"},
		{"other protocol", "220 smtp.example ESMTP\n", nil, Defer, "not an auth-userdb socket"},
		{"version 2", "VERSION\t2\t0\n", nil, Defer, "auth master protocol version 2, want 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := startFakeUserdb(t, tc.greeting, tc.answer)
			st := Store{Name: "downstream", Source: SourceDovecot, Path: path, Delimiter: "+", Lowercase: true}
			o := testOptions(st)
			o.Timeout = 300 * time.Millisecond
			v := newVerifier(t, o)
			r := lookup(v, st, "U+x@example.test")
			if r.Verdict != tc.verdict || !strings.Contains(r.Detail, tc.detail) || !strings.HasPrefix(r.Detail, "dovecot userdb "+path+": ") {
				t.Errorf("Lookup = %+v, want %v with %q", r, tc.verdict, tc.detail)
			}
		})
	}
}

// TestDovecotReuse: lookups share one connection.
func TestDovecotReuse(t *testing.T) {
	conns := 0
	path := startFakeUserdb(t, dovecotGreeting, func(u, id string) string { return "NOTFOUND\t" + id })
	st := Store{Source: SourceDovecot, Path: path}
	v := newVerifier(t, testOptions(st))
	for i := range 20 {
		if r := lookup(v, st, fmt.Sprintf("u%d@example.test", i)); r.Verdict != NotFound {
			t.Fatalf("lookup %d: %+v", i, r)
		}
	}
	v.dovecot(path).pool.mu.Lock()
	conns = len(v.dovecot(path).pool.idle)
	v.dovecot(path).pool.mu.Unlock()
	if conns != 1 {
		t.Errorf("%d idle connections after 20 lookups one after the other, want 1", conns)
	}
}

func TestTabEscape(t *testing.T) {
	for _, s := range []string{"plain@example.test", "a\tb@x", "\x00\x01\r\n", ""} {
		e := tabEscape(s)
		if strings.ContainsAny(e, "\t\r\n\x00") {
			t.Errorf("tabEscape(%q) = %q: still splits a line", s, e)
		}
		if back := tabUnescape(e); back != s {
			t.Errorf("tabUnescape(tabEscape(%q)) = %q", s, back)
		}
	}
}
