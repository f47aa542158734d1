package spamd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mxgate/filters"
	"mxgate/internal/peertest"
	"mxgate/spool"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		score                 float64
		spam                  bool
		status, scoreInt, bar string
	}{
		{12.27, true, "Yes, score=12.3", "123", "++++++++++++"},
		{12.1, true, "Yes, score=12.1", "121", "++++++++++++"},
		{5.0, true, "Yes, score=5.0", "50", "+++++"},
		{4.9, false, "No, score=4.9", "49", "++++"},
		{0.9, false, "No, score=0.9", "9", "/"},
		{0.0, false, "No, score=0.0", "0", "/"},
		{math.Copysign(0, -1), false, "No, score=0.0", "0", "/"}, // spamd's "-0.0"
		{-0.04, false, "No, score=0.0", "0", "/"},
		{-0.1, false, "No, score=-0.1", "-1", "/"},
		{-1.9, false, "No, score=-1.9", "-19", "-"},
		{-3.4, false, "No, score=-3.4", "-34", "---"},
		{77.0, true, "Yes, score=77.0", "770", strings.Repeat("+", 50)},
	}
	for _, tt := range tests {
		status, scoreInt, bar := Format(tt.score, tt.spam)
		if status != tt.status || scoreInt != tt.scoreInt || bar != tt.bar {
			t.Errorf("Format(%v, %v) = %q, %q, %q; want %q, %q, %q",
				tt.score, tt.spam, status, scoreInt, bar, tt.status, tt.scoreInt, tt.bar)
		}
	}
}

func readReplyFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "replies", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseReply(t *testing.T) {
	spam := readReplyFile(t, "pharmacy-spam.reply")
	tests := []struct {
		name    string
		in      []byte
		want    *Reply
		wantErr string
	}{
		{name: "real spam", in: spam, want: &Reply{Protocol: "1.1", Spam: true, Score: 12.1, Threshold: 5,
			Rules: []string{"DRUGS_ERECTILE", "DRUG_ED_ONLINE", "LONGWORDS", "NO_RECEIVED", "NO_RELAYS",
				"ONLINE_PHARMACY", "SUBJECT_DRUG_GAP_C", "SUBJECT_DRUG_GAP_L", "TVD_VISIT_PHARMA"}}},
		{name: "real ham", in: readReplyFile(t, "exim-basics-ham.reply"), want: &Reply{Protocol: "1.1", Score: 0, Threshold: 5,
			Rules: []string{"NO_RECEIVED", "NO_RELAYS"}}},
		{name: "REPORT_IFSPAM says No", in: readReplyFile(t, "report-ifspam-ham.reply"),
			want: &Reply{Protocol: "1.1", Score: 3.7, Threshold: 5}},
		{name: "Yes and LF line ends", in: []byte("SPAMD/1.5 0 EX_OK\nSpam: Yes ; 15.3 / 5.0\n\n"),
			want: &Reply{Protocol: "1.5", Spam: true, Score: 15.3, Threshold: 5}},
		{name: "extra CRLF after body", in: []byte("SPAMD/1.1 0 EX_OK\r\nContent-length: 2\r\nSpam: False ; 1.4 / 5.0\r\n\r\nab\r\n\r\n"),
			want: &Reply{Protocol: "1.1", Score: 1.4, Threshold: 5, Report: "ab"}},
		{name: "real EX_PROTOCOL", in: readReplyFile(t, "length-mismatch.reply"),
			wantErr: "spamd answered EX_PROTOCOL (76): Bad header line: (Content-Length mismatch: Expected 50 bytes, got 18 bytes)"},
		{name: "EX_TEMPFAIL", in: []byte("SPAMD/1.0 75 try later\r\n"), wantErr: "spamd answered EX_TEMPFAIL (75): try later"},
		{name: "unknown code", in: []byte("SPAMD/1.0 99 odd\r\n"), wantErr: "spamd answered EX_99 (99): odd"},
		{name: "empty", in: nil, wantErr: "malformed spamd reply: no complete response line in 0 bytes"},
		{name: "garbage", in: []byte("HTTP/1.1 200 OK\r\n\r\n"), wantErr: `malformed spamd reply: response line "HTTP/1.1 200 OK"`},
		{name: "no code", in: []byte("SPAMD/1.1\r\n"), wantErr: `malformed spamd reply: response line "SPAMD/1.1"`},
		{name: "headers cut off", in: []byte("SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1 / 5\r\n"),
			wantErr: "malformed spamd reply: headers not terminated by an empty line"},
		{name: "no Spam header", in: []byte("SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n"),
			wantErr: "malformed spamd reply: no Spam header"},
		{name: "body cut short", in: []byte("SPAMD/1.1 0 EX_OK\r\nContent-length: 100\r\nSpam: True ; 12.1 / 5.0\r\n\r\nSpam det"),
			wantErr: "malformed spamd reply: body has 8 of 100 bytes (connection closed early)"},
		{name: "bad flag", in: []byte("SPAMD/1.1 0 EX_OK\r\nSpam: Maybe ; 1.0 / 5.0\r\n\r\n"),
			wantErr: `malformed spamd reply: bad Spam header "Maybe ; 1.0 / 5.0"`},
		{name: "NaN score", in: []byte("SPAMD/1.1 0 EX_OK\r\nSpam: True ; NaN / 5.0\r\n\r\n"),
			wantErr: `malformed spamd reply: bad score in Spam header "True ; NaN / 5.0"`},
		{name: "huge threshold", in: []byte("SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1 / 1e300\r\n\r\n"),
			wantErr: `malformed spamd reply: bad threshold in Spam header "True ; 1 / 1e300"`},
		{name: "negative length", in: []byte("SPAMD/1.1 0 EX_OK\r\nContent-length: -1\r\nSpam: True ; 1 / 5\r\n\r\n"),
			wantErr: `malformed spamd reply: bad Content-length "-1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseReply(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want.Report == "" {
				tt.want.Report = got.Report // the real reports are checked by the rule list
			}
			if got.Protocol != tt.want.Protocol || got.Spam != tt.want.Spam || got.Score != tt.want.Score ||
				got.Threshold != tt.want.Threshold || got.Report != tt.want.Report || !slices.Equal(got.Rules, tt.want.Rules) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// FuzzParseReply's seeds (testdata/fuzz/FuzzParseReply) are real spamd
// answers captured from the test spamd.
// score is a configured score, as Options take it.
func score(f float64) *float64 { return &f }

func FuzzParseReply(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseReply(b)
		if err != nil {
			if r != nil {
				t.Fatal("reply and error")
			}
			return
		}
		if math.IsNaN(r.Score) || math.IsInf(r.Score, 0) || math.IsNaN(r.Threshold) {
			t.Fatalf("unusable numbers accepted: %+v", r)
		}
		// Whatever parsed must stamp valid header fields.
		for _, h := range New(Options{MaxSize: 512000, RejectScore: 15, Report: true}).verdict(r, nil).Headers {
			if !strings.HasSuffix(h.Text, "\n") || strings.Contains(strings.TrimSuffix(h.Text, "\n"), "\n\n") {
				t.Fatalf("bad header %q", h.Text)
			}
			for _, l := range strings.Split(strings.TrimSuffix(h.Text, "\n"), "\n")[1:] {
				if l == "" || (l[0] != ' ' && l[0] != '\t') {
					t.Fatalf("unfolded line in %q", h.Text)
				}
			}
			for _, c := range []byte(h.Text) {
				if c > 0x7e || (c < 0x20 && c != '\n' && c != '\t') {
					t.Fatalf("byte %#x in header %q", c, h.Text)
				}
			}
		}
	})
}

// loadMessage reads an .eml from testdata/messages into a filters.Message
// the way the gateway hands it over: LF line ends, headers split.
func loadMessage(t testing.TB, name string) *filters.Message {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "messages", name))
	if err != nil {
		t.Fatal(err)
	}
	return rawMessage(strings.ReplaceAll(string(b), "\r\n", "\n"))
}

func rawMessage(text string) *filters.Message {
	head, body, _ := strings.Cut(text, "\n\n")
	var hs []spool.Header
	for line := range strings.Lines(head + "\n") {
		if (line[0] == ' ' || line[0] == '\t') && len(hs) > 0 {
			hs[len(hs)-1].Text += line
			continue
		}
		hs = append(hs, spool.Header{Type: ' ', Text: line})
	}
	return &filters.Message{
		ID:       "1a2B3c-4D5e6F-7g",
		Headers:  hs,
		Size:     int64(len(head) + 2 + len(body)),
		OpenBody: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil },
	}
}

// fakeSpamd serves one scripted answer per connection on 127.0.0.1 and
// records each request it read.
type fakeSpamd struct {
	ln       net.Listener
	mu       sync.Mutex
	requests [][]byte
}

func startFake(t *testing.T, network string, serve func(c net.Conn, req []byte)) *fakeSpamd {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "spamd.sock")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSpamd{ln: ln}
	peertest.Serve(t, ln, func(c net.Conn) {
		req, _ := io.ReadAll(c) // to the client's half-close
		f.mu.Lock()
		f.requests = append(f.requests, req)
		f.mu.Unlock()
		serve(c, req)
	})
	return f
}

func (f *fakeSpamd) addr() string {
	if f.ln.Addr().Network() == "unix" {
		return "unix:" + f.ln.Addr().String()
	}
	return f.ln.Addr().String()
}

func answer(s string) func(net.Conn, []byte) {
	return func(c net.Conn, _ []byte) { io.WriteString(c, s) }
}

// refusedAddr is a loopback port nothing listens on.
func refusedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRequestBytes(t *testing.T) {
	fake := startFake(t, "tcp", answer("SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: False ; 1.4 / 5.0\r\n\r\n"))
	m := rawMessage("From: a@example.test\nTo: b@example.net\nSubject: test\nMessage-ID: <1@example.test>\n\nHello\n")
	m.Headers = append(m.Headers, spool.Header{Type: '*', Text: "X-Spam-Flag: NO\n"})
	if _, err := New(Options{Addresses: []string{fake.addr()}, User: "nobody", MaxSize: 512000, RejectScore: 15}).Check(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	want := "REPORT SPAMC/1.5\r\nUser: nobody\r\nContent-length: 95\r\n\r\n" +
		"From: a@example.test\r\nTo: b@example.net\r\nSubject: test\r\n" +
		"Message-ID: <1@example.test>\r\n\r\nHello\r\n"
	if got := string(fake.requests[0]); got != want {
		t.Errorf("request\n got %q\nwant %q", got, want)
	}
}

func TestVerdicts(t *testing.T) {
	tests := []struct {
		name   string
		opt    Options
		spam   string // the Spam header spamd answers
		report string
		want   filters.Verdict
	}{
		{
			name: "ham", opt: Options{RejectScore: 15}, spam: "False ; -0.1 / 5.0",
			want: filters.Verdict{Action: filters.Accept, Log: "spamd score=-0.1 required=5.0", Score: -0.1, Scored: true, Headers: hs(
				"X-Spam-Status: No, score=-0.1", "X-Spam-Score: -1", "X-Spam-Bar: /")},
		},
		{
			name: "spam is tagged", opt: Options{RejectScore: 15}, spam: "True ; 12.1 / 5.0",
			want: filters.Verdict{Action: filters.Accept, Log: "spamd score=12.1 required=5.0", Score: 12.1, Scored: true, Headers: hs(
				"X-Spam-Status: Yes, score=12.1", "X-Spam-Score: 121", "X-Spam-Bar: ++++++++++++", "X-Spam-Flag: YES")},
		},
		{
			name: "own tag score", opt: Options{TagScore: score(3), RejectScore: 15}, spam: "False ; 3.5 / 5.0",
			want: filters.Verdict{Action: filters.Accept, Log: "spamd score=3.5 required=3.0", Score: 3.5, Scored: true, Headers: hs(
				"X-Spam-Status: Yes, score=3.5", "X-Spam-Score: 35", "X-Spam-Bar: +++", "X-Spam-Flag: YES")},
		},
		{
			name: "quarantine", opt: Options{QuarantineScore: score(10), RejectScore: 15}, spam: "True ; 12.1 / 5.0",
			want: filters.Verdict{Action: filters.Quarantine, ReasonCode: "spam-score", Reason: "spam score 12.1 >= quarantine 10.0",
				Log: "spamd score=12.1 required=5.0", Score: 12.1, Scored: true, Headers: hs(
					"X-Spam-Status: Yes, score=12.1", "X-Spam-Score: 121", "X-Spam-Bar: ++++++++++++", "X-Spam-Flag: YES")},
		},
		{
			// 0 is a configured score like any other, not "unset".
			name: "tag and quarantine at 0", opt: Options{TagScore: score(0), QuarantineScore: score(0), RejectScore: 15}, spam: "False ; 0.0 / 5.0",
			want: filters.Verdict{Action: filters.Quarantine, ReasonCode: "spam-score", Reason: "spam score 0.0 >= quarantine 0.0",
				Log: "spamd score=0.0 required=0.0", Score: 0.0, Scored: true, Headers: hs(
					"X-Spam-Status: Yes, score=0.0", "X-Spam-Score: 0", "X-Spam-Bar: /", "X-Spam-Flag: YES")},
		},
		{
			name: "reject at 15", opt: Options{QuarantineScore: score(10), RejectScore: 15}, spam: "True ; 15.3 / 5.0",
			want: filters.Verdict{Action: filters.Reject, ReasonCode: "spam-score", Code: 550, Enhanced: [3]int{5, 7, 1},
				Text:   "Message scored 15.3 spam points (threshold 15.0); rejected as spam",
				Reason: "spam score 15.3 >= reject 15.0", Log: "spamd score=15.3 required=5.0", Score: 15.3, Scored: true, Headers: hs(
					"X-Spam-Status: Yes, score=15.3", "X-Spam-Score: 153", "X-Spam-Bar: +++++++++++++++", "X-Spam-Flag: YES")},
		},
		{
			name: "reject off", opt: Options{RejectScore: math.Inf(1)}, spam: "True ; 40.0 / 5.0",
			want: filters.Verdict{Action: filters.Accept, Log: "spamd score=40.0 required=5.0", Score: 40.0, Scored: true, Headers: hs(
				"X-Spam-Status: Yes, score=40.0", "X-Spam-Score: 400", "X-Spam-Bar: "+strings.Repeat("+", 40), "X-Spam-Flag: YES")},
		},
		{
			name: "report folded, non-ASCII replaced", opt: Options{RejectScore: 15, Report: true}, spam: "True ; 6.0 / 5.0",
			report: "Spam detection software\n\nContent preview:  caf\xc3\xa9 \x1b\n\n pts rule name\n---- ----\n 6.0 BAD_STUFF   Bad stuff   \n\n",
			want: filters.Verdict{Action: filters.Accept, Log: "spamd score=6.0 required=5.0 tests=BAD_STUFF", Score: 6.0, Scored: true, Headers: hs(
				"X-Spam-Status: Yes, score=6.0", "X-Spam-Score: 60", "X-Spam-Bar: ++++++",
				"X-Spam-Report: Spam detection software\n Content preview:  caf?? ?\n  pts rule name\n ---- ----\n  6.0 BAD_STUFF   Bad stuff",
				"X-Spam-Flag: YES")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply := fmt.Sprintf("SPAMD/1.1 0 EX_OK\r\nContent-length: %d\r\nSpam: %s\r\n\r\n%s", len(tt.report), tt.spam, tt.report)
			fake := startFake(t, "tcp", answer(reply))
			tt.opt.Addresses, tt.opt.MaxSize = []string{fake.addr()}, 512000
			got, err := New(tt.opt).Check(context.Background(), rawMessage("Subject: x\n\nhi\n"))
			if err != nil {
				t.Fatal(err)
			}
			if !equalVerdict(got, tt.want) {
				t.Errorf("verdict\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// testOptions are the Options config makes of a [spamd] with these
// addresses, every other key at its default.
func testOptions(addrs ...string) Options {
	return Options{Addresses: addrs, MaxSize: 512000, RejectScore: 15}
}

func hs(texts ...string) []spool.Header {
	var out []spool.Header
	for _, t := range texts {
		out = append(out, spool.Header{Type: ' ', Text: t + "\n"})
	}
	return out
}

func equalVerdict(a, b filters.Verdict) bool {
	return a.Action == b.Action && a.Code == b.Code && a.Enhanced == b.Enhanced && a.Text == b.Text &&
		a.Reason == b.Reason && a.Log == b.Log && slices.Equal(a.Headers, b.Headers) && slices.Equal(a.Edits, b.Edits) &&
		a.ReasonCode == b.ReasonCode && a.Score == b.Score && a.Scored == b.Scored
}

func TestSizeLimit(t *testing.T) {
	fake := startFake(t, "tcp", answer("SPAMD/1.1 0 EX_OK\r\nSpam: True ; 20.0 / 5.0\r\n\r\n"))
	m := rawMessage("Subject: big\n\n" + strings.Repeat("x", 1000) + "\n")
	got, err := New(Options{Addresses: []string{fake.addr()}, MaxSize: 1000, RejectScore: 15}).Check(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	want := filters.Verdict{Action: filters.Accept, Log: "spamd skipped size=1015 limit=1000",
		Headers: hs("X-Spam-Status: No, skipped, size=1015 limit=1000")}
	if !equalVerdict(got, want) {
		t.Errorf("verdict\n got %+v\nwant %+v", got, want)
	}
	if len(fake.requests) != 0 {
		t.Error("an oversized message was sent to spamd")
	}
}

func TestFailover(t *testing.T) {
	ok := "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: True ; 7.0 / 5.0\r\n\r\n"
	t.Run("refused then unix socket", func(t *testing.T) {
		fake := startFake(t, "unix", answer(ok))
		f := New(testOptions(refusedAddr(t), fake.addr()))
		v, err := f.Check(context.Background(), rawMessage("Subject: x\n\nhi\n"))
		if err != nil || v.Log != "spamd score=7.0 required=5.0" {
			t.Fatalf("got %+v, %v", v, err)
		}
	})
	t.Run("all refused", func(t *testing.T) {
		a, b := refusedAddr(t), refusedAddr(t)
		f := New(testOptions(a, b))
		_, err := f.Check(context.Background(), rawMessage("Subject: x\n\nhi\n"))
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), b) {
			t.Fatalf("error %v, want ErrUnavailable naming %s and %s", err, a, b)
		}
		if got := f.Unchecked(err); !slices.Equal(got, hs("X-Spam-Status: Unchecked (spamd: unavailable)")) {
			t.Errorf("Unchecked = %q", got)
		}
	})
	t.Run("a failing server is not failed over", func(t *testing.T) {
		bad := startFake(t, "tcp", answer("SPAMD/1.0 75 EX_TEMPFAIL\r\n"))
		good := startFake(t, "tcp", answer(ok))
		_, err := New(testOptions(bad.addr(), good.addr())).Check(context.Background(), rawMessage("Subject: x\n\nhi\n"))
		var se *ServerError
		if !errors.As(err, &se) || se.Code != 75 || len(good.requests) != 0 {
			t.Fatalf("error %v, %d requests to the second server; want EX_TEMPFAIL and none", err, len(good.requests))
		}
	})
}

func TestFaults(t *testing.T) {
	var hang chan struct{} // per subtest: closed before its fake server's cleanup waits
	tests := []struct {
		name       string
		serve      func(net.Conn, []byte)
		wantErr    string // substring
		wantIs     error
		wantStatus string
		timeout    time.Duration // of the check; default 200ms
	}{
		{
			name:    "hangs",
			serve:   func(net.Conn, []byte) { <-hang }, // answers nothing until the test ends
			wantErr: "context deadline exceeded", wantIs: context.DeadlineExceeded,
			wantStatus: "X-Spam-Status: Unchecked (spamd: timeout)",
		},
		{
			name:    "closes without answering",
			serve:   func(net.Conn, []byte) {},
			wantErr: "malformed spamd reply: no complete response line in 0 bytes", wantIs: ErrBadReply,
			wantStatus: "X-Spam-Status: Unchecked (spamd: malformed reply)",
		},
		{
			name:    "closes mid-body",
			serve:   answer("SPAMD/1.1 0 EX_OK\r\nContent-length: 1256\r\nSpam: True ; 12.1 / 5.0\r\n\r\nSpam detection"),
			wantErr: "body has 14 of 1256 bytes (connection closed early)", wantIs: ErrBadReply,
			wantStatus: "X-Spam-Status: Unchecked (spamd: malformed reply)",
		},
		{
			name:    "garbage",
			serve:   answer("\x00\xff\xfe garbage\r\n\r\n"),
			wantErr: "malformed spamd reply: response line", wantIs: ErrBadReply,
			wantStatus: "X-Spam-Status: Unchecked (spamd: malformed reply)",
		},
		{
			name:       "EX_TEMPFAIL",
			serve:      answer("SPAMD/1.0 75 EX_TEMPFAIL\r\n"),
			wantErr:    "spamd answered EX_TEMPFAIL (75): EX_TEMPFAIL",
			wantStatus: "X-Spam-Status: Unchecked (spamd: EX_TEMPFAIL)",
		},
		{
			name:  "endless answer",
			serve: func(c net.Conn, _ []byte) { io.Copy(c, io.LimitReader(zeros{}, maxReplySize+10)) },
			// Reading a megabyte must not race the deadline on a busy
			// machine: the size limit is what this case tests.
			timeout: 10 * time.Second,
			wantErr: "malformed spamd reply: reply longer than 1048576 bytes", wantIs: ErrBadReply,
			wantStatus: "X-Spam-Status: Unchecked (spamd: malformed reply)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hang = make(chan struct{})
			fake := startFake(t, "tcp", tt.serve)
			t.Cleanup(func() { close(hang) })
			f := New(testOptions(fake.addr()))
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 200 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			_, err := f.Check(ctx, rawMessage("Subject: x\n\nhi\n"))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || (tt.wantIs != nil && !errors.Is(err, tt.wantIs)) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), fake.addr()) || !strings.Contains(err.Error(), "1a2B3c-4D5e6F-7g") {
				t.Errorf("error %q does not name the server and the message", err)
			}
			if got := f.Unchecked(err); !slices.Equal(got, hs(tt.wantStatus)) {
				t.Errorf("Unchecked = %q, want %q", got, tt.wantStatus)
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// The breaker's skip and the chain's own timeout also get a short reason.
func TestUncheckedReasons(t *testing.T) {
	f := New(Options{})
	for err, want := range map[error]string{
		fmt.Errorf("spamd: %w", filters.ErrBreakerOpen):                  "circuit breaker open",
		fmt.Errorf("spamd: no verdict: %w", context.DeadlineExceeded):    "timeout",
		errors.New("reading message: open input/1/x-D: no such file"):    "scan failed",
		fmt.Errorf("x: %w", &ServerError{Code: 69, Text: "unavailable"}): "EX_UNAVAILABLE",
	} {
		if got := f.Unchecked(err); !slices.Equal(got, hs("X-Spam-Status: Unchecked (spamd: "+want+")")) {
			t.Errorf("Unchecked(%v) = %q, want reason %q", err, got, want)
		}
	}
}

// An unreadable spool file is reported as what it is, not as spamd's fault.
func TestBodyReadError(t *testing.T) {
	fake := startFake(t, "tcp", answer("SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1.0 / 5.0\r\n\r\n"))
	m := rawMessage("Subject: x\n\nhi\n")
	m.OpenBody = func() (io.ReadCloser, error) { return nil, errors.New("open input/g/1a2B3c-4D5e6F-7g-D: no such file") }
	_, err := New(testOptions(fake.addr())).Check(context.Background(), m)
	if err == nil || !strings.Contains(err.Error(), "reading message: open input/g/1a2B3c-4D5e6F-7g-D: no such file") {
		t.Fatalf("error %v", err)
	}
}
