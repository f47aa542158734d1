package auth

import (
	"bufio"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseAuthReply(t *testing.T) {
	for _, tt := range []struct {
		line    string
		ok      bool
		wantErr string
	}{
		{"OK\t7\tuser=alice@example.test", true, ""},
		{"FAIL\t7\tuser=alice@example.test", false, ""},
		{"FAIL\t7\ttemp\treason=backend down", false, "temporary failure"},
		{"FAIL\t8", false, "not to request 7"},
		{"CONT\t7\t", false, "more than PLAIN"},
		{"OK", false, "unexpected reply"},
		{"BOGUS\t7", false, "unexpected reply"},
	} {
		ok, err := ParseAuthReply(tt.line, 7)
		if ok != tt.ok || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("ParseAuthReply(%q) = %v, %v; want %v, %q", tt.line, ok, err, tt.ok, tt.wantErr)
		}
	}
}

func FuzzParseAuthReply(f *testing.F) {
	// More seeds in testdata/fuzz/FuzzParseAuthReply.
	f.Add("OK\t1\tuser=a", uint32(1))
	f.Fuzz(func(t *testing.T, line string, id uint32) {
		ok, err := ParseAuthReply(line, id)
		if ok && (err != nil || !strings.HasPrefix(line, "OK\t")) {
			t.Fatalf("ParseAuthReply(%q) = %v, %v", line, ok, err)
		}
	})
}

// fakeDovecot serves the auth-client handshake on a unix socket and
// answers each AUTH with answer (fault injection: the real Dovecot is
// the e2e tests').
func fakeDovecot(t *testing.T, handshake string, answer func(id string, n int) string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth-client")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		var n atomic.Int32
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte(handshake))
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
					if f[0] != "AUTH" {
						continue
					}
					a := answer(f[1], int(n.Add(1)))
					if a == "close" {
						return
					}
					if a != "" {
						c.Write([]byte(a + "\n"))
					}
				}
			}()
		}
	}()
	return path
}

const goodHandshake = "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t1\nCUID\t1\nCOOKIE\tx\nDONE\n"

func TestDovecotFaults(t *testing.T) {
	for _, tt := range []struct {
		name      string
		handshake string
		answer    func(id string, n int) string
		want      bool
		wantErr   string
	}{
		{"ok", goodHandshake, func(id string, _ int) string { return "OK\t" + id + "\tuser=a" }, true, ""},
		{"fail", goodHandshake, func(id string, _ int) string { return "FAIL\t" + id }, false, ""},
		{"temporary failure", goodHandshake, func(id string, _ int) string { return "FAIL\t" + id + "\ttemp" }, false, "temporary failure"},
		{"no PLAIN", "VERSION\t1\t2\nMECH\tLOGIN\nDONE\n", nil, false, "no PLAIN mechanism"},
		{"not dovecot", "220 smtp\n", nil, false, "not an auth-client socket"},
		{"version 2", "VERSION\t2\t0\nDONE\n", nil, false, "unsupported auth protocol version 2.0"},
		{"hangs", goodHandshake, func(string, int) string { return "" }, false, "deadline exceeded"},
		{"closes", goodHandshake, func(string, int) string { return "close" }, false, "unexpected EOF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDovecot(fakeDovecot(t, tt.handshake, tt.answer), 300*time.Millisecond)
			defer d.Close()
			ok, err := d.Check(context.Background(), "a", "p")
			if ok != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Check = %v, %v; want %v, %q", ok, err, tt.want, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrBackend) {
				t.Errorf("error %v is not ErrBackend", err)
			}
		})
	}
}

// TestDovecotRedial: a kept connection the server closed is dialled
// again once, unseen by the caller.
func TestDovecotRedial(t *testing.T) {
	path := fakeDovecot(t, goodHandshake, func(id string, n int) string {
		if n == 2 {
			return "close"
		}
		return "OK\t" + id
	})
	d := NewDovecot(path, time.Second)
	defer d.Close()
	for i := range 3 {
		if ok, err := d.Check(context.Background(), "a", "p"); !ok || err != nil {
			t.Fatalf("check %d = %v, %v", i, ok, err)
		}
	}
}

func TestDovecotNoSocket(t *testing.T) {
	d := NewDovecot(filepath.Join(t.TempDir(), "none"), time.Second)
	if _, err := d.Check(context.Background(), "a", "p"); err == nil || !strings.Contains(err.Error(), "connect") {
		t.Errorf("Check = %v, want a connect error", err)
	}
}
