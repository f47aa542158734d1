package peertest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Postfix is a private Postfix MTA that peers.sh started (postfix-mta):
// its smtpd on Addr, its config, queue and mail log under Dir.
type Postfix struct {
	Addr string // 127.0.0.1:PORT of its smtpd
	Dir  string
}

// StartPostfix starts a private Postfix on a free loopback port relaying
// to relay (the "127.0.0.1:PORT" of an smtp-sink), with mainCF (lines such
// as "smtpd_milters = inet:127.0.0.1:PORT") appended to its main.cf; it
// is stopped and its directory removed when the test ends. Its directory
// is one user postfix may enter (a test's TempDir is not).
func StartPostfix(tb testing.TB, relay, mainCF string) *Postfix {
	tb.Helper()
	Require(tb, "postfix", "postfix", "smtp-sink")
	_, port, ok := strings.Cut(relay, "127.0.0.1:")
	if !ok || port == "" {
		tb.Fatalf("peertest.StartPostfix: relay %q is not 127.0.0.1:PORT", relay)
	}
	dir, err := os.MkdirTemp("", "mxgate-postfix-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	extra := filepath.Join(dir, "main.cf.extra")
	if err := os.WriteFile(extra, []byte(mainCF), 0o644); err != nil {
		tb.Fatal(err)
	}
	mta := filepath.Join(dir, "mta")
	return &Postfix{Addr: Start(tb, "postfix-mta", mta, 0, port, extra), Dir: mta}
}

// Maillog is the text of the Postfix instance's mail log so far.
func (p *Postfix) Maillog(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(p.Dir, "maillog"))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
