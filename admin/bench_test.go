package admin

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mxgate/mainlog"
	"mxgate/spool"
)

// BenchmarkListQueue measures -bp and -bpc on spools of 10,000 and 100,000
// messages, on an open spool ("bp", "bpc") and as the command runs them,
// opening the spool first ("open+bp", "open+bpc": spool.Open scans every
// directory for crash leftovers).
func BenchmarkListQueue(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		dir := filepath.Join(b.TempDir(), "spool")
		buildSpool(b, dir, n)
		open := func(b *testing.B) *Queue {
			sp, err := spool.Open(dir, spool.Options{Sync: spool.SyncFdatasync})
			if err != nil {
				b.Fatal(err)
			}
			return &Queue{Spool: sp, Log: mainlog.Discard(), User: "bench"}
		}
		q := open(b)
		if c, err := q.Count(); err != nil || c != n {
			b.Fatalf("spool holds %d messages (%v), want %d", c, err, n)
		}
		b.Run(fmt.Sprintf("n=%d/bp", n), func(b *testing.B) {
			for b.Loop() {
				if err := q.List(io.Discard, false); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("n=%d/bpc", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := q.Count(); err != nil {
					b.Fatal(err)
				}
			}
		})
		q.Spool.Close()
		b.Run(fmt.Sprintf("n=%d/open+bp", n), func(b *testing.B) {
			for b.Loop() {
				q := open(b)
				if err := q.List(io.Discard, false); err != nil {
					b.Fatal(err)
				}
				q.Spool.Close()
			}
		})
		b.Run(fmt.Sprintf("n=%d/open+bpc", n), func(b *testing.B) {
			for b.Loop() {
				q := open(b)
				if _, err := q.Count(); err != nil {
					b.Fatal(err)
				}
				q.Spool.Close()
			}
		})
	}
}

// buildSpool writes n messages' -H and -D files straight into dir (a
// commit per message would take far longer), with ids in arrival order
// spread over the subdirectories as real arrivals are: about 1,000 a
// second, two recipients each, one of them done in every third message.
func buildSpool(b testing.TB, dir string, n int) {
	b.Helper()
	sp, err := spool.Open(dir, spool.Options{Sync: spool.SyncFdatasync}) // makes the input/X directories
	if err != nil {
		b.Fatal(err)
	}
	sp.Close()
	start := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	body := []byte(strings.Repeat("a line of body text, as long as many are in real mail..........\n", 32))
	for i := range n {
		received := start.Add(time.Duration(i) * time.Millisecond)
		id := benchID(received.Unix(), int64(i), int64(received.Nanosecond()/500_000))
		env := &spool.Envelope{
			ID:               id,
			Sender:           fmt.Sprintf("sender%d@example.net", i),
			Recipients:       []string{fmt.Sprintf("user%d@example.test", i), "postmaster@example.test"},
			Received:         received,
			HeloName:         "mail.example.net",
			HostAddress:      "192.0.2.1:41234",
			ReceivedProtocol: "esmtp",
			BodyLinecount:    32,
			Headers: []spool.Header{
				{Type: 'P', Text: "Received: from mail.example.net ([192.0.2.1])\n\tby mx.example.test with esmtp (mxgate)\n\tid " + string(id) + "; Wed, 01 May 2024 10:00:00 +0000\n"},
				{Type: 'F', Text: "From: Sender <sender@example.net>\n"},
				{Type: 'T', Text: "To: user@example.test\n"},
				{Type: ' ', Text: "Subject: a message of the benchmark queue\n"},
				{Type: 'I', Text: "Message-Id: <" + string(id) + "@example.net>\n"},
				{Type: ' ', Text: "Date: Wed, 01 May 2024 10:00:00 +0000\n"},
			},
		}
		if i%3 == 0 {
			env.Done = []string{"postmaster@example.test"}
		}
		sub := filepath.Join(dir, "input", string(id[5]))
		f, err := os.Create(filepath.Join(sub, string(id)+"-H"))
		if err != nil {
			b.Fatal(err)
		}
		if err := spool.WriteHeaderFile(f, env); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, string(id)+"-D"), append([]byte(string(id)+"-D\n"), body...), 0o640); err != nil {
			b.Fatal(err)
		}
	}
}

// benchID is a classic Exim id for an arrival second, a per-process
// field and a sub-second in 1/2000 s.
func benchID(sec, pid, sub int64) spool.ID {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var id [16]byte
	put := func(dst []byte, v int64) {
		for i := len(dst) - 1; i >= 0; i-- {
			dst[i] = digits[v%62]
			v /= 62
		}
	}
	put(id[0:6], sec)
	id[6] = '-'
	put(id[7:13], pid)
	id[13] = '-'
	put(id[14:16], sub)
	return spool.ID(id[:])
}
