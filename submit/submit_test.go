package submit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"mxgate/config"
	"mxgate/dsn"
	"mxgate/mainlog"
	"mxgate/route"
	"mxgate/spool"
)

var masks = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`(?m)(^Date: |^Arrival-Date: |; )[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [-+]\d{4}$`), "${1}DATE"},
	{regexp.MustCompile(`[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}`), "ID"},
}

// mask replaces the dates Submit writes and the queue IDs.
func mask(s string) string {
	for _, m := range masks {
		s = m.re.ReplaceAllString(s, m.with)
	}
	return s
}

type fixture struct {
	t     *testing.T
	cfg   *config.Config
	spool *spool.Spool
	log   *mainlog.Logger
	dir   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Hostname = "mx.example.test"
	cfg.Relay.Domains = relayDomains
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{Sync: spool.SyncFdatasync})
	if err != nil {
		t.Fatal(err)
	}
	lg, err := mainlog.Open(filepath.Join(dir, "log"), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close(); lg.Close() })
	return &fixture{t: t, cfg: cfg, spool: sp, log: lg, dir: dir}
}

// options submit as alice, the recipients decided by the router of
// outbound "none": the relay domains and partner.test, a [[route]]'s.
func (f *fixture) options() Options {
	return Options{Config: f.cfg, Spool: f.spool, Log: f.log, Accept: Routable(router("none")), User: "alice", DotEnds: true}
}

// relayDomains are the fixture's relay.domains.
var relayDomains = []string{"example.test", "mx.example.test"}

// router routes relayDomains to [downstream], partner.test by a
// [[route]], and the rest by outbound (mode "mx", "smarthost" or "none").
// Nothing is delivered: no transport is needed.
func router(outbound string) *route.Router {
	return route.New(route.Options{
		RelayDomains: relayDomains,
		Default:      route.StoreRoute{Name: route.DefaultRouter},
		Routes:       []route.StoreRoute{{Name: "partner", Domains: []string{"partner.test"}}},
		Outbound:     route.OutboundRoute{Mode: outbound},
	})
}

// message returns the spooled message as delivery reads it.
func (f *fixture) message(id spool.ID) string {
	f.t.Helper()
	rc, _, err := f.spool.OpenMessage(id)
	if err != nil {
		f.t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

// queued is what is in the spool.
func (f *fixture) queued() []spool.ID {
	f.t.Helper()
	ids, err := f.spool.List()
	if err != nil {
		f.t.Fatal(err)
	}
	return ids
}

func TestExtractRecipients(t *testing.T) {
	tests := []struct {
		file     string
		argv     []string
		want     []string
		wantHdrs string // the header as delivered, after Received:
	}{
		{
			file: "basic.eml",
			want: []string{"joe@example.test", "jane@example.test", "bob@example.test", "carol@example.test", "dave@example.test", "secret@example.test"},
			wantHdrs: "From: Alice <alice@example.test>\n" +
				"To: Joe Bloggs <joe@example.test>, \"Doe, Jane\" <jane@example.test> (work)\n" +
				"Cc: team: bob@example.test, Carol <carol@example.test>;, dave@example.test\n" +
				"Subject: basic\nDate: DATE\nMessage-ID: <EID@mx.example.test>\n",
		},
		{
			// Exim's extract_addresses_remove_arguments.
			file: "basic.eml",
			argv: []string{"jane@EXAMPLE.test", "secret@Example.Test", "nobody@example.test"},
			want: []string{"joe@example.test", "bob@example.test", "carol@example.test", "dave@example.test"},
			wantHdrs: "From: Alice <alice@example.test>\n" +
				"To: Joe Bloggs <joe@example.test>, \"Doe, Jane\" <jane@example.test> (work)\n" +
				"Cc: team: bob@example.test, Carol <carol@example.test>;, dave@example.test\n" +
				"Subject: basic\nDate: DATE\nMessage-ID: <EID@mx.example.test>\n",
		},
		{
			file: "resent.eml",
			want: []string{"new@example.test", "new-bcc@example.test"},
			wantHdrs: "From: Alice <alice@example.test>\nTo: original@example.test\nSubject: resent\n" +
				"Resent-From: Bob <bob@example.test>\nResent-To: new@example.test\nDate: DATE\nMessage-ID: <EID@mx.example.test>\n",
		},
		{
			file: "folded.eml",
			want: []string{"root@mx.example.test", `"john smith"@example.test`, "route@example.test"},
			wantHdrs: "From: cron@example.test\nTo: root,\n \"john smith\"@example.test,\n\t<@relay.test:route@example.test>\n" +
				"Subject: folded, CRLF\nDate: DATE\nMessage-ID: <EID@mx.example.test>\n",
		},
		{
			file:     "undisclosed.eml",
			want:     []string{"one@example.test", "two@example.test"},
			wantHdrs: "To: undisclosed-recipients:;\nSubject: undisclosed\nDate: DATE\nMessage-ID: <EID@mx.example.test>\nFrom: alice@mx.example.test\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f := newFixture(t)
			in, err := os.Open(filepath.Join("testdata", "extract", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			o := f.options()
			o.ExtractRecipients, o.Recipients = true, tt.argv
			m, err := Submit(context.Background(), o, in)
			if err != nil {
				t.Fatal(err)
			}
			env, err := f.spool.Load(m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(env.Recipients, tt.want) || !slices.Equal(m.Recipients, tt.want) {
				t.Errorf("recipients %q (envelope %q), want %q", m.Recipients, env.Recipients, tt.want)
			}
			msg := mask(f.message(m.ID))
			if !strings.HasPrefix(msg, "Received: ") {
				t.Fatalf("message does not start with Received:\n%s", msg)
			}
			_, rest, _ := strings.Cut(msg, "; DATE\n") // Received: ends with the date
			if want := tt.wantHdrs + "\nBody.\n"; rest != want {
				t.Errorf("message after Received:\n%s\nwant:\n%s", rest, want)
			}
			if strings.Contains(msg, "secret@") || strings.Contains(msg, "bcc@") {
				t.Errorf("a Bcc: is still sent:\n%s", msg)
			}
		})
	}
}

func TestSubmit(t *testing.T) {
	tests := []struct {
		name       string
		o          func(*Options)
		input      string
		wantSender string
		wantRcpts  []string
		wantMsg    string // with Date: and IDs masked
		wantLog    string // the arrival line from "<=", %d for the size
	}{
		{
			name:       "no header at all, LF, dot ends",
			o:          func(o *Options) { o.Recipients = []string{"bob"} },
			input:      "just a line\n.\nnot read\n",
			wantSender: "alice@mx.example.test",
			wantRcpts:  []string{"bob@mx.example.test"},
			wantMsg: "Received: from alice by mx.example.test with local (mxgate)\n" +
				"\t(envelope-from <alice@mx.example.test>)\n\tid ID\n\tfor <bob@mx.example.test>; DATE\n" +
				"Date: DATE\nMessage-ID: <EID@mx.example.test>\nFrom: alice@mx.example.test\n\njust a line\n",
			wantLog: "<= alice@mx.example.test U=alice P=local S=%d id=EID@mx.example.test",
		},
		{
			name: "CRLF, -i keeps the dot, null sender, -F name, last line without LF",
			o: func(o *Options) {
				o.Recipients, o.DotEnds, o.Sender, o.Name = []string{"bob@example.test", "Bob@EXAMPLE.test", "bob@Example.Test"}, false, "<>", "Zoë Alice"
			},
			input:      "Subject: s\r\nMessage-Id: <m1@client>\r\n\r\n.\r\n..\r\nend",
			wantSender: "",
			wantRcpts:  []string{"bob@example.test", "Bob@example.test"}, // local parts keep their case
			wantMsg: "Received: from alice by mx.example.test with local (mxgate)\n" +
				"\t(envelope-from <>)\n\tid ID; DATE\n" +
				"Subject: s\nMessage-Id: <m1@client>\nDate: DATE\nFrom: =?utf-8?q?Zo=C3=AB_Alice?= <alice@mx.example.test>\n\n.\n..\nend\n",
			wantLog: "<= <> U=alice P=local S=%d id=m1@client",
		},
		{
			name:       "-f with angle brackets; a long line; a dot after a cut is text",
			o:          func(o *Options) { o.Recipients, o.Sender = []string{"bob@example.test"}, "<Robot@Example.TEST>" },
			input:      "From: me@example.test\nDate: today\n\n" + strings.Repeat("x", 70000) + ".\n" + strings.Repeat("y", 65535) + "\r\nlast\n",
			wantSender: "Robot@example.test",
			wantRcpts:  []string{"bob@example.test"},
			wantMsg: "Received: from alice by mx.example.test with local (mxgate)\n" +
				"\t(envelope-from <Robot@example.test>)\n\tid ID\n\tfor <bob@example.test>; DATE\n" +
				"From: me@example.test\nDate: today\nMessage-ID: <EID@mx.example.test>\n\n" +
				strings.Repeat("x", 70000) + ".\n" + strings.Repeat("y", 65535) + "\nlast\n",
			wantLog: "<= Robot@example.test U=alice P=local S=%d id=EID@mx.example.test",
		},
		{
			name: "mbox From line dropped; a login name and a sender that would break Received: and the log",
			o: func(o *Options) {
				o.Recipients, o.User, o.Sender = []string{"bob@example.test"}, "a b(c)", `"a(b)"@example.test`
			},
			input:      "From alice Mon Jan  2 15:04:05 2006\nSubject: s\n\nbody\n",
			wantSender: `"a(b)"@example.test`,
			wantRcpts:  []string{"bob@example.test"},
			wantMsg: "Received: from a?b?c? by mx.example.test with local (mxgate)\n" +
				"\t(envelope-from <\"a\\(b\\)\"@example.test>)\n\tid ID\n\tfor <bob@example.test>; DATE\n" +
				"Subject: s\nDate: DATE\nMessage-ID: <EID@mx.example.test>\nFrom: \"a(b)\"@example.test\n\nbody\n",
			wantLog: "<= \"a(b)\"@example.test U=a?b?c? P=local S=%d id=EID@mx.example.test",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			o := f.options()
			tt.o(&o)
			m, err := Submit(context.Background(), o, strings.NewReader(tt.input))
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			env, err := f.spool.Load(m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if env.Sender != tt.wantSender || !slices.Equal(env.Recipients, tt.wantRcpts) || env.ReceivedProtocol != "local" || env.HostAddress != "" {
				t.Errorf("envelope sender %q rcpts %q protocol %q host %q; want %q %q local \"\"",
					env.Sender, env.Recipients, env.ReceivedProtocol, env.HostAddress, tt.wantSender, tt.wantRcpts)
			}
			msg := f.message(m.ID)
			if got := mask(msg); got != tt.wantMsg {
				t.Errorf("message:\n%.600s\nwant:\n%.600s", got, tt.wantMsg)
			}
			if m.Size != int64(len(msg)) {
				t.Errorf("size %d, message is %d bytes", m.Size, len(msg))
			}
			b, err := os.ReadFile(filepath.Join(f.dir, "log", "mainlog"))
			if err != nil {
				t.Fatal(err)
			}
			wantLog := fmt.Sprintf(tt.wantLog, len(msg))
			if got := mask(string(b)); !strings.HasSuffix(got, " ID "+wantLog+"\n") {
				t.Errorf("mainlog:\n%s\nwant it to end with %q", got, wantLog)
			}
			ml, err := os.ReadFile(f.spool.MsglogPath(m.ID))
			if err != nil || !strings.HasSuffix(mask(string(ml)), " Received from "+strings.TrimPrefix(wantLog, "<= ")+"\n") {
				t.Errorf("msglog %q, %v", ml, err)
			}
		})
	}
}

func TestSubmitRefused(t *testing.T) {
	tests := []struct {
		name  string
		o     func(*Options)
		input string
		want  string
	}{
		{"no recipients", func(o *Options) {}, "hi\n", "no recipients"},
		{"every recipient rejected", func(o *Options) { o.Recipients = []string{"a@b@", "u@other.test"} }, "hi\n", "no valid recipients: message not queued"},
		{"invalid sender", func(o *Options) { o.Recipients, o.Sender = []string{"u@example.test"}, "a@b@" }, "hi\n", `invalid sender "a@b@": bad address syntax: "a@b@": empty domain`},
		{"invalid address to remove with -t", func(o *Options) { o.Recipients, o.ExtractRecipients = []string{"u@"}, true }, "To: v@example.test\n\nhi\n", `invalid recipient "u@": bad address syntax: "u@": empty domain`},
		{"too big", func(o *Options) { o.Recipients = []string{"u@example.test"}; o.Config.SMTP.MaxMessageSize = 300 }, "Subject: x\n\n" + strings.Repeat("body\n", 30), "message too big: more than smtp.max_message_size 300 bytes"},
		{"header too big", func(o *Options) { o.Recipients = []string{"u@example.test"} }, "Subject: x\n" + strings.Repeat(" folded\n", maxHeaderBlock/8+1) + "\nhi\n", "header block larger than 1 MiB"},
		{"read error", func(o *Options) { o.Recipients = []string{"u@example.test"} }, "", "reading the message: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			o := f.options()
			tt.o(&o)
			var r io.Reader = strings.NewReader(tt.input)
			if tt.input == "" {
				r = io.MultiReader(strings.NewReader("Subject: x\n\nhi\n"), errReader{errors.New("boom")})
			}
			_, err := Submit(context.Background(), o, r)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Submit: %v, want %q", err, tt.want)
			}
			if strings.Contains(tt.want, "recipients") && !errors.Is(err, ErrNoRecipients) {
				t.Errorf("%v is not ErrNoRecipients", err)
			}
			if ids := f.queued(); len(ids) != 0 {
				t.Errorf("spool holds %v", ids)
			}
			entries, err := os.ReadDir(filepath.Join(f.dir, "spool", "input"))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if files, _ := os.ReadDir(filepath.Join(f.dir, "spool", "input", e.Name())); len(files) != 0 {
					t.Errorf("input/%s holds %d files", e.Name(), len(files))
				}
			}
		})
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestAddressList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		bad  []string
	}{
		{in: "a@example.test", want: []string{"a@example.test"}},
		{in: " A <a@example.test> , b@example.test ", want: []string{"a@example.test", "b@example.test"}},
		{in: `"Last, First" <f@example.test>`, want: []string{"f@example.test"}},
		{in: `"john smith"@example.test`, want: []string{`"john smith"@example.test`}},
		{in: `"a\"b"@example.test`, want: []string{`"a\"b"@example.test`}},
		{in: "a@example.test (Comment, with (nested) comma)", want: []string{"a@example.test"}},
		{in: "group: a@example.test, B <b@example.test>;, c@example.test", want: []string{"a@example.test", "b@example.test", "c@example.test"}},
		{in: "undisclosed-recipients:;", want: nil},
		{in: "<@r1.test,@r2.test:u@example.test>", want: []string{"u@example.test"}},
		{in: "root, postmaster", want: []string{"root", "postmaster"}},
		{in: "user @ example . test", want: []string{"user@example.test"}},
		{in: "a@example.test,\n\tb@example.test", want: []string{"a@example.test", "b@example.test"}},
		{in: ",,", want: nil},
		{in: "", want: nil},
		{in: "Name Only", bad: []string{"Name Only"}},
		{in: "a@example.test, Two  Words, b@example.test", want: []string{"a@example.test", "b@example.test"}, bad: []string{"Two Words"}},
		{in: "Name\n\tFolded; c@example.test", want: []string{"c@example.test"}, bad: []string{"Name Folded"}},
	}
	for _, tt := range tests {
		got, bad := addressList(tt.in)
		if !slices.Equal(got, tt.want) || !slices.Equal(bad, tt.bad) {
			t.Errorf("addressList(%q) = %q, bad %q; want %q, bad %q", tt.in, got, bad, tt.want, tt.bad)
		}
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// boundary is dsn's random MIME boundary.
var boundary = regexp.MustCompile(`\d+-mxgate-[0-9a-f]{16}`)

// A recipient that cannot be accepted is left out, reported and bounced;
// the message is queued for the others, as sendmail does.
func TestSubmitRejected(t *testing.T) {
	tests := []struct {
		name     string
		o        func(*Options)
		input    string
		want     []string // the envelope's recipients
		rejected []string // Rejection.String()
		bounce   string   // golden file under testdata/rejected; "" for none
	}{
		{
			name: "-bm: malformed, unroutable and address tricks among good ones",
			o: func(o *Options) {
				o.Recipients = []string{"bob@example.test", "a@b@", "bad@@x", "u@other.test", "u%other.test@example.test", "u@[192.0.2.1]", "carol", "u@partner.test", "u@other.test"}
			},
			input: "Subject: hello\n\nhi\n",
			want:  []string{"bob@example.test", "carol@mx.example.test", "u@partner.test"},
			rejected: []string{
				`<a@b@>: recipient address rejected: malformed address: "a@b@": empty domain`,
				`<"bad@"@x>: recipient address rejected: Restricted characters in address`,
				"<u@other.test>: recipient address rejected: Unrouteable address",
				"<u%other.test@example.test>: recipient address rejected: Restricted characters in address",
				"<u@[192.0.2.1]>: recipient address rejected: relay not permitted",
			},
			bounce: "bm.eml",
		},
		{
			name:  "-t: a name without an address and an unroutable domain in the header",
			o:     func(o *Options) { o.ExtractRecipients, o.Sender = true, "robot@example.test" },
			input: "To: Joe <joe@example.test>, John Smith\nCc: u@other.test, joe@example.test\nBcc: hidden@other.test\nSubject: report\n\nhi\n",
			want:  []string{"joe@example.test"},
			rejected: []string{
				`<John Smith>: recipient address rejected: malformed address: "John Smith": a name without <address>`,
				"<u@other.test>: recipient address rejected: Unrouteable address",
				"<hidden@other.test>: recipient address rejected: Unrouteable address",
			},
			bounce: "t.eml",
		},
		{
			// A local program is trusted as a client of the trusted
			// networks: any domain the router routes, no address trick.
			name: "outbound smarthost: every domain routes, no trick passes",
			o: func(o *Options) {
				o.Accept = Routable(router("smarthost"))
				o.Recipients = []string{"u@other.test", "bob@example.test", "u%v@other.test", "u!v@other.test", "@relay.test:u@other.test", "u@[192.0.2.1]", "/tmp/x@other.test", "U@Gmail.Example"}
			},
			input: "Subject: s\n\nhi\n",
			want:  []string{"u@other.test", "bob@example.test", "U@gmail.example"},
			rejected: []string{
				"<u%v@other.test>: recipient address rejected: Restricted characters in address",
				"<u!v@other.test>: recipient address rejected: Restricted characters in address",
				`<"@relay.test:u"@other.test>: recipient address rejected: Restricted characters in address`,
				"<u@[192.0.2.1]>: recipient address rejected: relay not permitted",
				"</tmp/x@other.test>: recipient address rejected: Restricted characters in address",
			},
			bounce: "smarthost.eml",
		},
		{
			name: "outbound mx: every domain routes",
			o: func(o *Options) {
				o.Accept = Routable(router("mx"))
				o.Recipients = []string{"u@other.test", "v@gmail.example"}
			},
			input: "hi\n",
			want:  []string{"u@other.test", "v@gmail.example"},
		},
		{
			name:     "the null sender gets no bounce",
			o:        func(o *Options) { o.Recipients, o.Sender = []string{"bob@example.test", "u@other.test"}, "<>" },
			input:    "hi\n",
			want:     []string{"bob@example.test"},
			rejected: []string{"<u@other.test>: recipient address rejected: Unrouteable address"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			o := f.options()
			tt.o(&o)
			m, err := Submit(context.Background(), o, strings.NewReader(tt.input))
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			var got []string
			for _, r := range m.Rejected {
				got = append(got, r.String())
			}
			if !slices.Equal(got, tt.rejected) {
				t.Errorf("rejected:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.rejected, "\n"))
			}
			env, err := f.spool.Load(m.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(env.Recipients, tt.want) || !slices.Equal(m.Recipients, tt.want) {
				t.Errorf("recipients %q (envelope %q), want %q", m.Recipients, env.Recipients, tt.want)
			}

			// The mainlog: the arrival, a ** line per rejected
			// recipient, the bounce's arrival.
			b, err := os.ReadFile(filepath.Join(f.dir, "log", "mainlog"))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			wantLines := 1 + len(tt.rejected)
			if tt.bounce != "" {
				wantLines++
			}
			if len(lines) != wantLines || !strings.Contains(lines[0], " "+string(m.ID)+" <= ") {
				t.Fatalf("mainlog:\n%s", b)
			}
			for i, r := range m.Rejected {
				if want := fmt.Sprintf(" %s ** %s: %s", m.ID, r.Addr, r.Refusal.Log); !strings.HasSuffix(lines[1+i], want) {
					t.Errorf("mainlog line %q, want it to end with %q", lines[1+i], want)
				}
			}

			ids := f.queued()
			if tt.bounce == "" {
				if m.Bounce != "" || len(ids) != 1 {
					t.Errorf("bounce %q, spool %v; want no bounce", m.Bounce, ids)
				}
				return
			}
			if len(ids) != 2 || !slices.Contains(ids, m.Bounce) {
				t.Fatalf("spool %v, want the message and its bounce %q", ids, m.Bounce)
			}
			if want := fmt.Sprintf(" %s <= <> R=%s U=%s P=local S=", m.Bounce, m.ID, dsn.User()); !strings.Contains(lines[len(lines)-1], want) {
				t.Errorf("last mainlog line %q, want the bounce's arrival %q", lines[len(lines)-1], want)
			}
			benv, err := f.spool.Load(m.Bounce)
			if err != nil {
				t.Fatal(err)
			}
			if benv.Sender != "" || !slices.Equal(benv.Recipients, []string{m.Sender}) {
				t.Errorf("bounce from %q to %q, want from <> to %q", benv.Sender, benv.Recipients, m.Sender)
			}
			bounce := mask(boundary.ReplaceAllString(f.message(m.Bounce), "BOUNDARY"))
			path := filepath.Join("testdata", "rejected", tt.bounce)
			if *update {
				if err := os.WriteFile(path, []byte(bounce), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if bounce != string(want) {
				t.Errorf("bounce differs from %s:\n%s", path, bounce)
			}
		})
	}
}

// TestSubmitShortOfSpace: a spool below its reserve takes no local
// message, before or after reading it, and keeps nothing of it.
func TestSubmitShortOfSpace(t *testing.T) {
	body := "Subject: x\n\n" + strings.Repeat("0123456789abcdef\n", 64) // over 1 KiB
	tests := []struct {
		name  string
		space spool.Space
		want  string
	}{
		{"below the reserve", spool.Space{Bytes: 1<<20 - 1024, Inodes: 5000},
			"insufficient disk space (spool directory space = 1023K inodes = 5000 check_space = 1024K inodes = 100 msg_size = 0): message not queued"},
		{"the message would eat it", spool.Space{Bytes: 1<<20 + 1024, Inodes: 5000},
			"insufficient disk space (spool directory space = 1025K inodes = 5000 check_space = 1024K inodes = 100 msg_size = 1"},
		{"out of inodes", spool.Space{Bytes: 1 << 30, Inodes: 99},
			"insufficient disk space (spool directory space = 1048576K inodes = 99 check_space = 1024K inodes = 100 msg_size = 0): message not queued"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			sp, err := spool.Open(filepath.Join(f.dir, "spool"), spool.Options{Sync: spool.SyncFdatasync,
				MinFreeSpace: 1 << 20, MinFreeInodes: 100,
				StatFS: func(string) (spool.Space, error) { return tt.space, nil }})
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			o := f.options()
			o.Spool, o.Recipients = sp, []string{"u@example.test"}
			_, err = Submit(context.Background(), o, strings.NewReader(body))
			var short *spool.Shortage
			if !errors.As(err, &short) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("Submit: %v, want a *spool.Shortage, %q", err, tt.want)
			}
			if ids, err := sp.List(); err != nil || len(ids) != 0 {
				t.Errorf("spool holds %v, %v", ids, err)
			}
			rej, err := os.ReadFile(filepath.Join(f.dir, "log", "rejectlog"))
			if err != nil || !strings.Contains(string(rej), " U=alice temporarily rejected local message: "+tt.want) {
				t.Errorf("rejectlog %q, %v", rej, err)
			}
			files, err := filepath.Glob(filepath.Join(f.dir, "spool", "input", "*", "*"))
			if err != nil || len(files) != 0 {
				t.Errorf("spool files left: %q, %v", files, err)
			}
		})
	}
}
