package mainlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var fixed = time.Date(2024, 5, 1, 10, 0, 7, 123456000, time.Local)

func openAt(t *testing.T, json bool) (*Logger, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "log")
	l, err := Open(dir, json)
	if err != nil {
		t.Fatal(err)
	}
	l.now = func() time.Time { return fixed }
	t.Cleanup(func() { l.Close() })
	return l, dir
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLines(t *testing.T) {
	tests := []struct {
		name                string
		log                 func(l *Logger)
		main, reject, panic string
	}{
		{
			name: "arrival",
			log: func(l *Logger) {
				l.Main("1tXyZa-000AbC-Qr", "<= alice@example.test H=mx.example.net [192.0.2.1] P=esmtp S=2310")
			},
			main: "2024-05-01 10:00:07 1tXyZa-000AbC-Qr <= alice@example.test H=mx.example.net [192.0.2.1] P=esmtp S=2310\n",
		},
		{
			name: "no id",
			log:  func(l *Logger) { l.Main("", "Start queue run: pid=42") },
			main: "2024-05-01 10:00:07 Start queue run: pid=42\n",
		},
		{
			name: "escaped",
			log:  func(l *Logger) { l.Main("", "a\nb\r\tc\x1b[0m\x00\x7f é \xff \u202e") },
			main: `2024-05-01 10:00:07 a\nb\r\tc\x1b[0m\x00\x7f é \xff \xe2\x80\xae` + "\n",
		},
		{
			name: "reject",
			log: func(l *Logger) {
				l.Reject("", "H=(x) [192.0.2.9] F=<a@b.test> rejected RCPT <c@d.test>: relay not permitted")
			},
			main:   "2024-05-01 10:00:07 H=(x) [192.0.2.9] F=<a@b.test> rejected RCPT <c@d.test>: relay not permitted\n",
			reject: "2024-05-01 10:00:07 H=(x) [192.0.2.9] F=<a@b.test> rejected RCPT <c@d.test>: relay not permitted\n",
		},
		{
			name: "reject with headers",
			log: func(l *Logger) {
				l.Reject("1tXyZa-000AbC-Qr", "H=[192.0.2.9] F=<a@b.test> rejected after DATA: spam",
					"Envelope-from: <a@b.test>", "Envelope-to: <c@d.test>", "P Received: from x\n\tby y\n", "  Subject: hi")
			},
			main: "2024-05-01 10:00:07 1tXyZa-000AbC-Qr H=[192.0.2.9] F=<a@b.test> rejected after DATA: spam\n",
			reject: "2024-05-01 10:00:07 1tXyZa-000AbC-Qr H=[192.0.2.9] F=<a@b.test> rejected after DATA: spam\n" +
				"Envelope-from: <a@b.test>\nEnvelope-to: <c@d.test>\n" + `P Received: from x\n\tby y\n` + "\n  Subject: hi\n",
		},
		{
			name:  "panic",
			log:   func(l *Logger) { l.Panic("cannot open spool: permission denied") },
			main:  "2024-05-01 10:00:07 cannot open spool: permission denied\n",
			panic: "2024-05-01 10:00:07 cannot open spool: permission denied\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, dir := openAt(t, false)
			tc.log(l)
			for file, want := range map[string]string{MainFile: tc.main, RejectFile: tc.reject, PanicFile: tc.panic} {
				if got := readFile(t, filepath.Join(dir, file)); got != want {
					t.Errorf("%s:\n got %q\nwant %q", file, got, want)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, JSONFile)); !os.IsNotExist(err) {
				t.Errorf("%s exists without the json option (err %v)", JSONFile, err)
			}
		})
	}
}

// Debian 12's eximstats reads the id with substr($_, 20, 16) and the flag
// with substr($_, 37, 2).
func TestEximstatsOffsets(t *testing.T) {
	l, dir := openAt(t, false)
	l.now = time.Now
	l.Main("1tXyZa-000AbC-Qr", "=> bob@example.test R=dnslookup T=remote_smtp H=mx [192.0.2.2]")
	line := readFile(t, filepath.Join(dir, MainFile))
	if id := line[20:36]; id != "1tXyZa-000AbC-Qr" {
		t.Errorf("id at offset 20 = %q in %q", id, line)
	}
	if flag := line[37:39]; flag != "=>" {
		t.Errorf("flag at offset 37 = %q in %q", flag, line)
	}
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d 1tXyZa`).MatchString(line) {
		t.Errorf("timestamp shape: %q", line)
	}
}

func TestJSON(t *testing.T) {
	l, dir := openAt(t, true)
	l.Main("1tXyZa-000AbC-Qr", "Completed")
	l.Reject("", "rejected RCPT <x@y>: no\nway", "Envelope-from: <a@b>")
	l.Panic("boom")
	if got, want := readFile(t, filepath.Join(dir, MainFile)),
		"2024-05-01 10:00:07 1tXyZa-000AbC-Qr Completed\n"+
			"2024-05-01 10:00:07 rejected RCPT <x@y>: no\\nway\n"+
			"2024-05-01 10:00:07 boom\n"; got != want {
		t.Errorf("mainlog:\n got %q\nwant %q", got, want)
	}
	stamp := fixed.Format("2006-01-02T15:04:05.000000Z07:00")
	want := []jsonRecord{
		{Time: stamp, ID: "1tXyZa-000AbC-Qr", Log: "main", Text: "Completed"},
		{Time: stamp, Log: "reject", Text: "rejected RCPT <x@y>: no\nway", Extra: []string{"Envelope-from: <a@b>"}},
		{Time: stamp, Log: "panic", Text: "boom"},
	}
	lines := strings.Split(strings.TrimSuffix(readFile(t, filepath.Join(dir, JSONFile)), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("main.json has %d lines, want %d: %q", len(lines), len(want), lines)
	}
	for i, line := range lines {
		var got jsonRecord
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("line %d %q: %v", i+1, line, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want[i]) {
			t.Errorf("line %d = %+v, want %+v", i+1, got, want[i])
		}
	}
	if !strings.Contains(lines[0], `"time":"2024-05-01T10:00:07.123456`) {
		t.Errorf("time field not RFC 3339 with microseconds: %s", lines[0])
	}
}

func TestReopenAfterRotation(t *testing.T) {
	l, dir := openAt(t, true)
	l.Main("", "before")
	for _, name := range []string{MainFile, JSONFile} {
		if err := os.Rename(filepath.Join(dir, name), filepath.Join(dir, name+".1")); err != nil {
			t.Fatal(err)
		}
	}
	l.Main("", "still old")
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Main("", "after")
	if got, want := readFile(t, filepath.Join(dir, MainFile+".1")), "2024-05-01 10:00:07 before\n2024-05-01 10:00:07 still old\n"; got != want {
		t.Errorf("rotated mainlog = %q, want %q", got, want)
	}
	if got, want := readFile(t, filepath.Join(dir, MainFile)), "2024-05-01 10:00:07 after\n"; got != want {
		t.Errorf("new mainlog = %q, want %q", got, want)
	}
	if got := readFile(t, filepath.Join(dir, JSONFile)); !strings.Contains(got, `"text":"after"`) || strings.Contains(got, "before") {
		t.Errorf("new main.json = %q", got)
	}
}

func TestReopenFailureKeepsLogging(t *testing.T) {
	l, dir := openAt(t, false)
	if err := os.Mkdir(filepath.Join(dir, "x"), 0o750); err != nil {
		t.Fatal(err)
	}
	// A directory where the rejectlog should be makes the reopen fail.
	if err := os.Rename(filepath.Join(dir, RejectFile), filepath.Join(dir, "old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "x"), filepath.Join(dir, RejectFile)); err != nil {
		t.Fatal(err)
	}
	err := l.Reopen()
	if err == nil || !strings.Contains(err.Error(), RejectFile) {
		t.Fatalf("Reopen error = %v, want one naming %s", err, RejectFile)
	}
	l.Main("", "kept")
	if got := readFile(t, filepath.Join(dir, MainFile)); got != "2024-05-01 10:00:07 kept\n" {
		t.Errorf("mainlog after failed reopen = %q", got)
	}
}

func TestConcurrentLinesStayWhole(t *testing.T) {
	l, dir := openAt(t, false)
	const writers, perWriter = 8, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				l.Main(fmt.Sprintf("1tXyZa-%06d-Qr", w), fmt.Sprintf("=> rcpt%d@example.test %s", i, strings.Repeat("x", 200)))
				if i%100 == 0 {
					if err := l.Reopen(); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	f, err := os.Open(filepath.Join(dir, MainFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	re := regexp.MustCompile(`^2024-05-01 10:00:07 1tXyZa-00000[0-7]-Qr => rcpt\d+@example.test x{200}$`)
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if !re.Match(sc.Bytes()) {
			t.Fatalf("torn line %d: %q", n+1, sc.Bytes())
		}
		n++
	}
	if n != writers*perWriter {
		t.Errorf("%d lines, want %d", n, writers*perWriter)
	}
}

func TestDiscardAndClosed(t *testing.T) {
	var nilLogger *Logger
	for name, l := range map[string]*Logger{"Discard": Discard(), "nil": nilLogger} {
		l.Main("1tXyZa-000AbC-Qr", "x")
		l.Reject("", "x", "y")
		l.Panic("x")
		if err := l.Reopen(); err != nil {
			t.Errorf("%s: Reopen: %v", name, err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("%s: Close: %v", name, err)
		}
	}

	l, dir := openAt(t, false)
	l.Main("", "open")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Main("", "closed")
	if got := readFile(t, filepath.Join(dir, MainFile)); got != "2024-05-01 10:00:07 open\n" {
		t.Errorf("mainlog after Close = %q", got)
	}
}

func TestEscapeKeepsOneLine(t *testing.T) {
	var all bytes.Buffer
	for c := range 256 {
		all.WriteByte(byte(c))
	}
	got := Escape(all.String())
	for i := range len(got) {
		if c := got[i]; c < 0x20 || c == 0x7f || c >= 0x80 {
			t.Fatalf("Escape left byte %#x at %d in %q", c, i, got)
		}
	}
	if !strings.HasPrefix(got, `\x00\x01`) || !strings.Contains(got, `\t\n\x0b\x0c\r`) || !strings.Contains(got, ` !"#`) ||
		!strings.Contains(got, `}~\x7f\x80\x81`) || !strings.HasSuffix(got, `\xfe\xff`) {
		t.Errorf("Escape(0..255) = %q", got)
	}
}

func BenchmarkMain(b *testing.B) {
	l, err := Open(b.TempDir(), false)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Main("1tXyZa-000AbC-Qr", "=> bob@example.test R=dnslookup T=remote_smtp H=mx.example.test [192.0.2.2] C=\"250 OK\"")
		}
	})
}
