package clamd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mxgate/filters"
	"mxgate/internal/peertest"
	"mxgate/spool"
)

// lfFile is the file at path with CRLF line ends made LF, as the spool
// stores a message.
func lfFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
}

// fileMessage is the message in path as the gateway hands it to filters:
// LF line ends, the header block parsed into fields, the body read from
// disk.
func fileMessage(tb testing.TB, path string) *filters.Message {
	tb.Helper()
	b := lfFile(tb, path)
	path = filepath.Join(tb.TempDir(), filepath.Base(path))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	head, _, ok := strings.Cut(string(b), "\n\n")
	if !ok {
		tb.Fatalf("%s: no blank line after the headers", path)
	}
	var hs []spool.Header
	for line := range strings.SplitAfterSeq(head+"\n", "\n") {
		if line == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(hs) > 0 {
			hs[len(hs)-1].Text += line
			continue
		}
		hs = append(hs, spool.Header{Type: ' ', Text: line})
	}
	bodyStart := int64(len(head) + 2)
	return &filters.Message{
		ID:      "1tXyZa-000AbC-Qr",
		Sender:  "a@client.test",
		Headers: hs,
		Size:    int64(len(b)),
		OpenBody: func() (io.ReadCloser, error) {
			f, err := os.Open(path)
			if err == nil {
				_, err = f.Seek(bodyStart, io.SeekStart)
			}
			return f, err
		},
	}
}

// textMessage is a message with one Subject field and body.
func textMessage(body string) *filters.Message {
	return &filters.Message{
		ID:       "1tXyZa-000AbC-Qr",
		Headers:  []spool.Header{{Type: ' ', Text: "Subject: test\n"}},
		Size:     int64(len("Subject: test\n\n") + len(body)),
		OpenBody: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil },
	}
}

// fakeClamd serves each connection on 127.0.0.1 with handle until the
// test ends.
func fakeClamd(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peertest.Serve(t, ln, handle)
	return ln.Addr().String()
}

// readInstream reads a whole INSTREAM request: the data and the length of
// each chunk, the terminating zero included.
func readInstream(c net.Conn) ([]byte, []int, error) {
	cmd := make([]byte, len("zINSTREAM\x00"))
	if _, err := io.ReadFull(c, cmd); err != nil {
		return nil, nil, err
	}
	if string(cmd) != "zINSTREAM\x00" {
		return nil, nil, errors.New("bad command " + string(cmd))
	}
	var data []byte
	var chunks []int
	for {
		var n uint32
		if err := binary.Read(c, binary.BigEndian, &n); err != nil {
			return nil, nil, err
		}
		chunks = append(chunks, int(n))
		if n == 0 {
			return data, chunks, nil
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(c, buf); err != nil {
			return nil, nil, err
		}
		data = append(data, buf...)
	}
}

// answering is a fake clamd that reads the request and sends reply.
func answering(reply string) func(c net.Conn) {
	return func(c net.Conn) {
		if _, _, err := readInstream(c); err == nil {
			io.WriteString(c, reply)
		}
	}
}

const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

func TestCheckVerdicts(t *testing.T) {
	clean := fakeClamd(t, answering("stream: OK\x00"))
	virus := fakeClamd(t, answering("stream: Eicar-Test-Signature FOUND\x00"))
	for _, tc := range []struct {
		name string
		addr string
		opts Options
		want filters.Verdict
	}{
		{"clean", clean, Options{OnVirus: OnVirusReject}, filters.Verdict{Action: filters.Accept, Log: "clamd clean"}},
		{"clean stamped", clean, Options{OnVirus: OnVirusReject, StampClean: true}, filters.Verdict{
			Action: filters.Accept, Log: "clamd clean",
			Headers: []spool.Header{{Type: ' ', Text: "X-Virus-Scanned: clamav (mxgate)\n"}},
		}},
		{"virus rejected", virus, Options{OnVirus: OnVirusReject, StampClean: true}, filters.Verdict{
			Action: filters.Reject, Code: 550, Enhanced: [3]int{5, 7, 1},
			Text:   "Virus found: Eicar-Test-Signature",
			Reason: "virus Eicar-Test-Signature", Log: "clamd virus=Eicar-Test-Signature",
			ReasonCode: "virus", Virus: "Eicar-Test-Signature",
		}},
		{"virus quarantined", virus, Options{OnVirus: OnVirusQuarantine}, filters.Verdict{
			Action: filters.Quarantine,
			Reason: "virus Eicar-Test-Signature", Log: "clamd virus=Eicar-Test-Signature",
			ReasonCode: "virus", Virus: "Eicar-Test-Signature",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Addresses = []string{tc.addr}
			got, err := New(tc.opts).Check(context.Background(), textMessage("hello\n"))
			if err != nil {
				t.Fatal(err)
			}
			if !verdictEqual(got, tc.want) {
				t.Errorf("verdict\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// testOptions are the Options config makes of a [clamd] with these
// addresses, every other key at its default.
func testOptions(addrs ...string) Options {
	return Options{Addresses: addrs, OnVirus: OnVirusReject}
}

func verdictEqual(a, b filters.Verdict) bool {
	return a.Action == b.Action && a.Code == b.Code && a.Enhanced == b.Enhanced && a.Text == b.Text &&
		a.Reason == b.Reason && a.Log == b.Log && slices.Equal(a.Headers, b.Headers) &&
		a.ReasonCode == b.ReasonCode && a.Virus == b.Virus
}

// TestStreamsInChunks checks the bytes clamd receives and their framing:
// the message as Open(false) yields it, in chunkSize pieces.
func TestStreamsInChunks(t *testing.T) {
	type request struct {
		data   []byte
		chunks []int
	}
	got := make(chan request, 1)
	addr := fakeClamd(t, func(c net.Conn) {
		data, chunks, err := readInstream(c)
		if err != nil {
			t.Errorf("fake clamd: %v", err)
			return
		}
		got <- request{data, chunks}
		io.WriteString(c, "stream: OK\x00")
	})
	m := fileMessage(t, "../../testdata/messages/gateway-plain.eml")
	f := New(testOptions(addr))
	f.chunkSize = 100
	if _, err := f.Check(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	want := lfFile(t, "../../testdata/messages/gateway-plain.eml")
	r := <-got
	if !bytes.Equal(r.data, want) {
		t.Errorf("clamd received\n%q\nwant the message file\n%q", r.data, want)
	}
	var wantChunks []int
	for n := len(want); n > 0; n -= 100 {
		wantChunks = append(wantChunks, min(n, 100))
	}
	wantChunks = append(wantChunks, 0)
	if !slices.Equal(r.chunks, wantChunks) {
		t.Errorf("chunk lengths %v, want %v", r.chunks, wantChunks)
	}
}

func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clamd.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		answering("stream: Win.Test.EICAR_HDB-1 FOUND\x00")(c)
	}()
	v, err := New(testOptions("unix:"+path)).Check(context.Background(), textMessage(eicar))
	if err != nil || v.Text != "Virus found: Win.Test.EICAR_HDB-1" {
		t.Errorf("Check over a unix socket = %+v, %v", v, err)
	}
}

// freeAddr is a 127.0.0.1 address nothing listens on.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestFailover(t *testing.T) {
	down := freeAddr(t)
	garbage := fakeClamd(t, answering("HTTP/1.0 400 Bad Request\r\n\r\n"))
	virus := fakeClamd(t, answering("stream: Eicar-Test-Signature FOUND\x00"))
	sizeLimit := fakeClamd(t, answering("INSTREAM size limit exceeded. ERROR\x00"))
	for _, tc := range []struct {
		name    string
		addrs   []string
		want    string // verdict text
		wantErr error
	}{
		{"down then up", []string{down, virus}, "Virus found: Eicar-Test-Signature", nil},
		{"garbage then up", []string{garbage, virus}, "Virus found: Eicar-Test-Signature", nil},
		// Another server has the same limit: the answer stands.
		{"size limit is an answer", []string{sizeLimit, virus}, "", ErrSizeLimit},
		{"all down", []string{down, down}, "", errUnreachable},
		{"none configured", nil, "", errUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(testOptions(tc.addrs...)).Check(context.Background(), textMessage(eicar))
			if !errors.Is(err, tc.wantErr) || v.Text != tc.want {
				t.Errorf("Check = %+v, %v; want text %q, error %v", v, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestFaults: a clamd that misbehaves gives an error, never a clean
// verdict, and never a wait past the deadline.
func TestFaults(t *testing.T) {
	big := strings.Repeat("0123456789abcdef\n", 1<<18) // 4.25 MiB, more than socket buffers hold
	for _, tc := range []struct {
		name      string
		handle    func(c net.Conn)
		body      string
		wantErr   error
		wantText  string // in the error
		unchecked string
	}{
		{"hangs after the stream", func(c net.Conn) { readInstream(c); io.Copy(io.Discard, c) }, "hello\n",
			context.DeadlineExceeded, "reading the reply", "X-Virus-Scanned: unchecked (clamd: timeout)\n"},
		{"never reads", func(c net.Conn) { time.Sleep(time.Second) }, big,
			context.DeadlineExceeded, "sending the message", "X-Virus-Scanned: unchecked (clamd: timeout)\n"},
		{"closes at once", func(c net.Conn) {}, "hello\n",
			io.ErrUnexpectedEOF, "connection closed without a reply", "X-Virus-Scanned: unchecked (clamd: error)\n"},
		// The reset races the client's read and write: either may report it.
		{"resets mid-stream", func(c net.Conn) { c.Read(make([]byte, 100)); c.(*net.TCPConn).SetLinger(0) }, big,
			nil, "", "X-Virus-Scanned: unchecked (clamd: error)\n"},
		{"garbage", answering("\x01\x02garbage\x00"), "hello\n",
			ErrBadReply, `unexpected reply "\x01\x02garbage"`, "X-Virus-Scanned: unchecked (clamd: bad reply)\n"},
		{"n-style reply", answering("stream: OK\n"), "hello\n",
			ErrBadReply, "not NUL-terminated", "X-Virus-Scanned: unchecked (clamd: bad reply)\n"},
		{"truncated reply", answering("stream: Eicar"), "hello\n",
			ErrBadReply, "not NUL-terminated", "X-Virus-Scanned: unchecked (clamd: bad reply)\n"},
		{"endless reply", func(c net.Conn) { readInstream(c); c.Write(bytes.Repeat([]byte("A"), 10000)) }, "hello\n",
			ErrBadReply, "more than 4096 bytes without a NUL", "X-Virus-Scanned: unchecked (clamd: bad reply)\n"},
		{"other error", answering("Can't allocate memory ERROR\x00"), "hello\n",
			nil, `clamd answered "Can't allocate memory ERROR"`, "X-Virus-Scanned: unchecked (clamd: error)\n"},
		// clamd stops reading when the quota is used up, answers and
		// closes while the client is still writing.
		{"size limit mid-write", func(c net.Conn) {
			io.ReadFull(c, make([]byte, 10+4+64<<10))
			io.WriteString(c, "INSTREAM size limit exceeded. ERROR\x00")
			c.(*net.TCPConn).SetLinger(0) // close with unread data: a reset
		}, big, ErrSizeLimit, "StreamMaxLength", "X-Virus-Scanned: unchecked (clamd: message too large)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeClamd(t, tc.handle)
			f := New(testOptions(addr))
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			v, err := f.Check(ctx, textMessage(tc.body))
			if err == nil {
				t.Fatalf("Check = %+v, want an error", v)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Check error %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantText) || !strings.HasPrefix(err.Error(), "clamd: message 1tXyZa-000AbC-Qr: "+addr+": ") {
				t.Errorf("Check error %q, want it to name the message and %s and contain %q", err, addr, tc.wantText)
			}
			if got := f.Unchecked(err); len(got) != 1 || got[0] != (spool.Header{Type: ' ', Text: tc.unchecked}) {
				t.Errorf("Unchecked = %q, want %q", got, tc.unchecked)
			}
		})
	}
}

func TestUncheckedUnreachable(t *testing.T) {
	f := New(testOptions(freeAddr(t)))
	_, err := f.Check(context.Background(), textMessage("hello\n"))
	want := []spool.Header{{Type: ' ', Text: "X-Virus-Scanned: unchecked (clamd: unreachable)\n"}}
	if got := f.Unchecked(err); !slices.Equal(got, want) {
		t.Errorf("Unchecked(%v) = %q, want %q", err, got, want)
	}
}

// TestSpoolReadError: a message the spool cannot read is not sent to a
// second server, and the error says it was the spool.
func TestSpoolReadError(t *testing.T) {
	var conns atomic.Int32
	addr := fakeClamd(t, func(c net.Conn) { conns.Add(1); readInstream(c) })
	m := textMessage("")
	m.OpenBody = func() (io.ReadCloser, error) { return nil, os.ErrPermission }
	_, err := New(testOptions(addr, addr)).Check(context.Background(), m)
	if !errors.Is(err, os.ErrPermission) || err.Error() != "clamd: message 1tXyZa-000AbC-Qr: reading the message: permission denied" {
		t.Errorf("Check = %v, want the spool's permission error", err)
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("%d connections to clamd for a message that could not be read", n)
	}
}

func TestParseReply(t *testing.T) {
	for _, tc := range []struct {
		reply   string
		virus   string
		wantErr error
	}{
		{"stream: OK\x00", "", nil},
		{"stream: Eicar-Test-Signature FOUND\x00", "Eicar-Test-Signature", nil},
		{"stream: Test.EICAR.NDB.UNOFFICIAL FOUND\x00", "Test.EICAR.NDB.UNOFFICIAL", nil},
		{"stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND\x00", "Heuristics.Limits.Exceeded.MaxFileSize", nil},
		{"INSTREAM size limit exceeded. ERROR\x00", "", ErrSizeLimit},
		{"stream: OK", "", ErrBadReply},
		{"", "", ErrBadReply},
		{"\x00", "", ErrBadReply},
		{"stream: \x00", "", ErrBadReply},
		{"stream:  FOUND\x00", "", ErrBadReply},
		{"stream: Two Words FOUND\x00", "", ErrBadReply},
		{"stream: Evil\r\n550 FOUND\x00", "", ErrBadReply},
		{"stream: OK\x00trailing", "", ErrBadReply},
		{"1: stream: OK\x00", "", ErrBadReply},
		{"PONG\x00", "", ErrBadReply},
		{"UNKNOWN COMMAND\x00", "", ErrBadReply},
		{"stream: ok\x00", "", ErrBadReply},
	} {
		virus, err := ParseReply([]byte(tc.reply))
		if virus != tc.virus || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Errorf("ParseReply(%q) = %q, %v; want %q, %v", tc.reply, virus, err, tc.virus, tc.wantErr)
		}
	}
	if _, err := ParseReply([]byte("Can't open file ERROR\x00")); err == nil || errors.Is(err, ErrBadReply) {
		t.Errorf("ParseReply of a clamd error = %v, want clamd's error quoted", err)
	}
}

// FuzzParseReply: no reply is clean unless it is exactly "stream: OK",
// and a virus name is always one printable word.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"stream: OK\x00", "stream: Eicar-Test-Signature FOUND\x00", "INSTREAM size limit exceeded. ERROR\x00", "x ERROR\x00", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		virus, err := ParseReply(b)
		if err != nil {
			if virus != "" {
				t.Errorf("ParseReply(%q) = %q with error %v", b, virus, err)
			}
			return
		}
		if virus == "" && string(b) != "stream: OK\x00" {
			t.Errorf("ParseReply(%q) = clean", b)
		}
		if virus != "" && (!printable(virus) || strings.ContainsRune(virus, ' ') || string(b) != "stream: "+virus+" FOUND\x00") {
			t.Errorf("ParseReply(%q) = virus %q", b, virus)
		}
	})
}
