package milter

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"mxgate/mainlog"
)

// TestLogLines: every log line names what it is about. Lines of a message
// (end of message, body, modifications, failures while it is handled)
// start with its queue ID, as `exigrep ID` needs; lines before DATA start
// with the client, "H=[ip]" or "H=(helo) [ip]".
func TestLogLines(t *testing.T) {
	const id = "1abcde-000001-AB"
	const host = "H=(client.example) [192.0.2.1]"
	modify := func(m *gomilter.Modifier) (gomilter.Response, error) {
		for _, err := range []error{
			m.AddHeader("X-Spam-Status", "Yes, score=5.40"),
			m.InsertHeader(0, "DKIM-Signature", "v=1;\r\n\tb=abc"),
			m.ChangeHeader(1, "Subject", "[SPAM] hello"),
			m.ChangeHeader(1, "Received", ""),
			m.AddRecipient("new@example.net"),
			m.DeleteRecipient("b@example.net"),
			m.ChangeFrom("<bounce@example.test>"),
			m.ReplaceBody([]byte("new\r\n")),
		} {
			if err != nil {
				return nil, err
			}
		}
		return gomilter.RespAccept, nil
	}
	hang := func() (gomilter.Response, error) { time.Sleep(time.Minute); return gomilter.RespContinue, nil }
	refused, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := "inet:" + refused.Addr().String()
	refused.Close()
	tests := []struct {
		name string
		f    fake
		addr string   // "" = the fake
		want []string // every line, in order; ADDR stands for the milter's address
	}{
		{"modifications", fake{eom: modify}, "", []string{
			id + " milter m: add header X-Spam-Status: Yes, score=5.40",
			id + " milter m: insert header at 0 DKIM-Signature: v=1;",
			id + " milter m: change header Subject #1: [SPAM] hello",
			id + " milter m: delete header Received #1",
			id + " milter m: add recipient <new@example.net>",
			id + " milter m: delete recipient <b@example.net>",
			id + " milter m: change sender <bounce@example.test>",
			id + " milter m: replace body (4 bytes)",
		}},
		{"quarantine", fake{eom: func(m *gomilter.Modifier) (gomilter.Response, error) {
			return gomilter.RespAccept, m.Quarantine("looks bad")
		}}, "", []string{id + " milter m: quarantine: looks bad"}},
		{"tempfail at end of message", fake{eom: func(*gomilter.Modifier) (gomilter.Response, error) {
			return gomilter.RespTempFail, nil
		}}, "", []string{id + " milter m: tempfail at end of message: 451 4.7.1 Service unavailable - try again later"}},
		{"discard at end of message", fake{eom: func(*gomilter.Modifier) (gomilter.Response, error) {
			return gomilter.RespDiscard, nil
		}}, "", []string{id + " milter m: discard at end of message"}},
		{"reject in the body", fake{chunk: func() (gomilter.Response, error) { return gomilter.RespReject, nil }}, "",
			[]string{id + " milter m: reject at body: 550 5.7.1 Command rejected"}},
		{"failure in the body", fake{chunk: hang}, "", []string{
			`~^` + id + ` milter m \(ADDR\) failed at body: .*timeout; on_error tempfail$`}},
		{"reject at MAIL", fake{mail: gomilter.RespReject}, "", []string{
			host + " milter m: reject at MAIL: 550 5.7.1 Command rejected"}},
		{"discard at MAIL", fake{mail: gomilter.RespDiscard}, "", []string{host + " milter m: discard at MAIL"}},
		{"reply at RCPT", fake{rcpt: gomilter.NewResponseStr('y', "554 5.7.0 Go away")}, "", []string{
			host + " milter m: reject at RCPT: 554 5.7.0 Go away"}},
		{"reject at connect", fake{conn: gomilter.RespReject}, "", []string{
			"H=[192.0.2.1] milter m: reject at connect: 550 5.7.1 Command rejected"}},
		{"refused at connect", fake{}, deadAddr, []string{
			`~^H=\[192\.0\.2\.1\] milter m \(ADDR\) failed at connect: .*connection refused; on_error tempfail$`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.addr
			if addr == "" {
				addr, _ = serve(t, 0, func() *fake { f := tt.f; return &f })
			}
			o := testOptions(addr, "m")
			o.CommandTimeout, o.EOMTimeout = 300*time.Millisecond, 300*time.Millisecond
			s, logs := newTestSession(t, o)
			transaction(s, "old\n")
			got := *logs
			if len(got) != len(tt.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i, w := range tt.want {
				if re, ok := strings.CutPrefix(w, "~"); ok {
					re = strings.ReplaceAll(re, "ADDR", regexp.QuoteMeta(addr))
					if !regexp.MustCompile(re).MatchString(got[i]) {
						t.Errorf("line %d: %q does not match %q", i, got[i], re)
					}
				} else if got[i] != w {
					t.Errorf("line %d:\n got %q\nwant %q", i, got[i], w)
				}
			}
		})
	}
}

// After a message, the lines are the connection's again; each message's
// lines carry its own ID.
func TestLogLinesPerMessage(t *testing.T) {
	addr, _ := serve(t, 0, func() *fake {
		return &fake{eom: func(m *gomilter.Modifier) (gomilter.Response, error) {
			return gomilter.RespAccept, m.AddHeader("X-Seen", "yes")
		}}
	})
	s, logs := newTestSession(t, testOptions(addr, "m"))
	ctx := context.Background()
	s.Helo(ctx, "client.example")
	for _, id := range []string{"1abcde-000001-AB", "1abcde-000002-AB"} {
		s.Mail(ctx, "a@example.test", "", "")
		s.Rcpt(ctx, "b@example.net")
		s.Data(ctx, id, testHeaders, strings.NewReader("hi\n"))
	}
	s.logf("milter m: test") // a line of the connection, after the messages
	want := []string{
		"1abcde-000001-AB milter m: add header X-Seen: yes",
		"1abcde-000002-AB milter m: add header X-Seen: yes",
		"H=(client.example) [192.0.2.1] milter m: test",
	}
	if strings.Join(*logs, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant\n%s", strings.Join(*logs, "\n"), strings.Join(want, "\n"))
	}
}

// The host hands the queue ID apart from the text, so that
// mainlog.Logger.Main writes the mainlog line "ID text" (as exigrep wants)
// and main.json carries the ID in its id field; lines before DATA have
// none.
func TestLogLinesMainlog(t *testing.T) {
	addr, _ := serve(t, 0, func() *fake {
		return &fake{eom: func(m *gomilter.Modifier) (gomilter.Response, error) {
			return gomilter.RespAccept, m.AddHeader("X-Seen", "yes")
		}}
	})
	dir := t.TempDir()
	log, err := mainlog.Open(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	h, err := NewHost([]Options{testOptions(addr, "m")}, log.Main)
	if err != nil {
		t.Fatal(err)
	}
	s := h.NewSession(context.Background(), ConnInfo{Hostname: "mx.example.net", DaemonName: "mxgate",
		ClientIP: netip.MustParseAddr("192.0.2.1"), ClientPort: 4321})
	defer s.Close()
	s.logf("milter m: before") // a line of the connection, before DATA
	transaction(s, "hi\n")

	main, err := os.ReadFile(filepath.Join(dir, mainlog.MainFile))
	if err != nil {
		t.Fatal(err)
	}
	wantMain := []string{
		"H=[192.0.2.1] milter m: before",
		"1abcde-000001-AB milter m: add header X-Seen: yes",
	}
	lines := strings.Split(strings.TrimSuffix(string(main), "\n"), "\n")
	if len(lines) != len(wantMain) {
		t.Fatalf("mainlog:\n%s\nwant %d lines", main, len(wantMain))
	}
	for i, l := range lines {
		// "2006-01-02 15:04:05 " comes first.
		if len(l) < 20 || l[20:] != wantMain[i] {
			t.Errorf("mainlog line %d: %q, want the stamp and %q", i, l, wantMain[i])
		}
	}

	js, err := os.ReadFile(filepath.Join(dir, mainlog.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	type record struct{ ID, Text string }
	var got []record
	dec := json.NewDecoder(bytes.NewReader(js))
	for dec.More() {
		var r record
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	want := []record{
		{"", "H=[192.0.2.1] milter m: before"},
		{"1abcde-000001-AB", "milter m: add header X-Seen: yes"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("main.json records %+v, want %+v", got, want)
	}
}
