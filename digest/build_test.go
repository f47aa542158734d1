package digest

import (
	"context"
	"html"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mxgate/internal/mailtest"
)

func testOptions() Options {
	return Options{
		URL: "https://mx.example.test:8025", From: "postmaster@mx.example.test", Hostname: "mx.example.test",
		Domains: []string{"example.test"}, Key: testKey, Lifetime: 7 * 24 * time.Hour,
		Now: func() time.Time { return testNow },
	}
}

// message is m as the spool would send it: headers, blank line, body.
func message(m *Mail) string {
	var b strings.Builder
	for _, h := range m.Headers {
		b.WriteString(h.Text)
	}
	return b.String() + "\n" + string(m.Body)
}

func TestBuild(t *testing.T) {
	q := newTestQueue(t)
	id1 := q.quarantine(t, "spammer@example.net", `<b>Win</b> & "prizes"`, "15.2", "bob@example.test", "Carol@Example.Test", "x@elsewhere.example")
	id2 := q.quarantine(t, "", "=?utf-8?q?caf=C3=A9?=", "7.0", "bob@example.test")
	id3 := q.quarantine(t, "other@example.net", "gone for carol", "9.9", "carol@example.test", "dave@example.test")
	if _, err := q.Spool.QuarantineDeleteFor(id3, "carol@example.test"); err != nil {
		t.Fatal(err)
	}
	list, err := q.Spool.QuarantineList()
	if err != nil {
		t.Fatal(err)
	}
	told := &State{}
	told.Add(id3, "dave@example.test")
	o := testOptions()
	mails := Build(&o, list, told, "")

	var got []string
	for _, m := range mails {
		var ids []string
		for _, it := range m.Items {
			ids = append(ids, string(it.ID))
		}
		got = append(got, m.Recipient+": "+strings.Join(ids, " "))
	}
	// Only local recipients; carol's deleted one and dave's reported one
	// are not listed again.
	want := []string{"bob@example.test: " + string(id1) + " " + string(id2), "Carol@Example.Test: " + string(id1)}
	if !slices.Equal(got, want) {
		t.Fatalf("digests %q, want %q", got, want)
	}

	hdr, body := mailtest.Alternative(t, message(mails[0]))
	for name, want := range map[string]string{
		"From": "postmaster@mx.example.test", "To": "bob@example.test",
		"Subject": "Quarantine report: 2 messages held for you", "Auto-Submitted": "auto-generated",
		"Date": testNow.Format(time.RFC1123Z),
	} {
		if got := hdr.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	text, htm := body["text/plain"], body["text/html"]
	received := testNow.Add(-time.Hour).Local().Format(dateLayout)
	for _, tc := range []struct {
		part, text, want string
	}{
		{"text", text, `<b>Win</b> & "prizes"`},
		{"text", text, "café"},
		{"text", text, "15.2"},
		{"text", text, "<>"},
		{"text", text, received},
		{"html", htm, html.EscapeString(`<b>Win</b> & `)},
		{"html", htm, "caf\u00e9"},
		{"html", htm, "spammer@example.net"},
		{"html", htm, "15.2"},
		{"html", htm, received},
	} {
		if !strings.Contains(tc.text, tc.want) {
			t.Errorf("%s part lacks %q:\n%s", tc.part, tc.want, tc.text)
		}
	}
	if strings.Contains(htm, "<b>Win") {
		t.Errorf("html part has the subject's markup unescaped:\n%s", htm)
	}
	// Each message has its release and delete link in both parts, for
	// this recipient.
	for _, it := range mails[0].Items {
		for _, link := range []string{it.Release, it.Delete} {
			if !strings.Contains(text, link) || !strings.Contains(htm, `href="`+link+`"`) {
				t.Errorf("link %s missing from a part", link)
			}
			tok, err := Verify(testKey, strings.TrimPrefix(link, o.URL+"/q/"), testNow)
			if err != nil || tok.ID != it.ID || tok.Recipient != "bob@example.test" || !tok.Expires.Equal(testNow.Add(o.Lifetime)) {
				t.Errorf("link %s: %+v, %v", link, tok, err)
			}
		}
	}
	if only := Build(&o, list, told, "CAROL@example.test"); len(only) != 1 || only[0].Recipient != "Carol@Example.Test" {
		t.Errorf("Build to carol: %d digests", len(only))
	}
	if hdr, _ := mailtest.Alternative(t, message(mails[1])); hdr.Get("Subject") != "Quarantine report: 1 message held for you" {
		t.Errorf("one message's subject: %q", hdr.Get("Subject"))
	}
}

// Send commits each digest through the spool with its "<=" line, and a
// message is reported once: a second send has nothing new, a message
// that arrives later is the only one in the next.
func TestSend(t *testing.T) {
	q := newTestQueue(t)
	id1 := q.quarantine(t, "spammer@example.net", "one", "15.2", "bob@example.test")
	s := &Sender{Options: testOptions(), Spool: q.Spool, Log: q.Log, State: filepath.Join(q.dir, "digest.state")}
	ctx := context.Background()
	sent, err := s.Send(ctx, "")
	if err != nil || len(sent) != 1 || sent[0].Recipient != "bob@example.test" || sent[0].Messages != 1 {
		t.Fatalf("Send = %+v, %v", sent, err)
	}
	env, err := q.Spool.Load(sent[0].ID)
	if err != nil || env.Sender != "" || !slices.Equal(env.Recipients, []string{"bob@example.test"}) {
		t.Errorf("queued digest %+v, %v", env, err)
	}
	msg, _, err := q.Spool.OpenMessage(sent[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer msg.Close()
	mid := "D" + string(sent[0].ID) + "@mx.example.test"
	size := env.HeaderSize() + 1 + env.BodySize
	wantLog := []string{string(sent[0].ID) + " <= <> U=mxgate P=local S=" + itoa(size) + " id=" + mid}
	if got := q.mainlog(t); !slices.Equal(got, wantLog) {
		t.Errorf("mainlog %q, want %q", got, wantLog)
	}

	if again, err := s.Send(ctx, ""); err != nil || len(again) != 0 {
		t.Errorf("second Send = %+v, %v; want nothing new", again, err)
	}
	if _, _, err := q.QuarantineRelease(string(id1)); err != nil {
		t.Fatal(err)
	}
	id2 := q.quarantine(t, "spammer@example.net", "two", "8.0", "bob@example.test")
	next, err := s.Send(ctx, "")
	if err != nil || len(next) != 1 || next[0].Messages != 1 {
		t.Fatalf("third Send = %+v, %v", next, err)
	}
	b, _ := os.ReadFile(s.State)
	if got, want := string(b), string(id2)+" bob@example.test\n"; got != want {
		t.Errorf("state file %q, want %q: the released message forgotten", got, want)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
