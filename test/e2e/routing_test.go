package e2e

import (
	"fmt"

	"mxgate/internal/dnstest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// routeCase is one address of the routing test and what both -bt and the
// daemon must do with it.
type routeCase struct {
	rcpt   string // as sent in RCPT TO:<> and given to -bt
	logged string // as -bt prints it and the mainlog names it; "" when refused
	router string // R= on the delivery line and -bt's router; "" when not routed
	// rcptCode is the reply to RCPT from a trusted client.
	rcptCode int
	// verify is -bt's "verify =" line for a store ("" for outbound: -bt
	// prints none).
	verify string
}

// routeCases are the 20 addresses, for outbound mode out ("mx",
// "smarthost" or "none") and the branch route's recipients file: every
// store kind (LMTP over TCP and a unix socket, SMTP, Maildir), partner,
// outbound, unroutable, a Maildir domain without a user, refused and
// malformed.
func routeCases(out, recipients string) []routeCase {
	foreign := func(rcpt string) routeCase {
		switch out {
		case "none":
			return routeCase{rcpt: rcpt, rcptCode: 550}
		case "mx":
			return routeCase{rcpt: rcpt, logged: rcpt, router: "dnslookup", rcptCode: 250}
		}
		return routeCase{rcpt: rcpt, logged: rcpt, router: "smarthost", rcptCode: 250}
	}
	branch := "file:" + recipients
	return []routeCase{
		{"user@example.test", "user@example.test", "downstream", 250, "none"},
		{"User+tag@Example.TEST", "User+tag@example.test", "downstream", 250, "none"},
		{"postmaster@example.test", "postmaster@example.test", "downstream", 250, "none"},
		{"a@branch.test", "a@branch.test", "branch", 250, branch},
		{"b.c@Branch.Test", "b.c@branch.test", "branch", 250, branch},
		{"info@hosted.test", "info@hosted.test", "hosted", 250, "none"},
		{"Info+news@hosted.test", "Info+news@hosted.test", "hosted", 250, "none"},
		{"root@hosted.test", "root@hosted.test", "hosted", 250, "none"},
		// A Maildir domain without a user: refused at RCPT, never bounced.
		{"x@shop.test", "", "", 550, ""},
		{"p@partner.test", "p@partner.test", "partner.test", 250, "none"},
		{"u@Unix.Test", "u@unix.test", "socket", 250, "callout"},
		foreign("someone@gmail.example"),
		foreign("a@foreign.test"),
		foreign("b@sub.example.test"),
		foreign("c@example.test.foreign.test"),
		{"user@[192.0.2.1]", "", "", 550, ""},
		{"u%x@example.test", "", "", 550, ""},
		{".hidden@example.test", "", "", 550, ""},
		{"user@", "", "", 501, ""},
		{"user", "", "", 501, ""},
	}
}

// routingMxgate starts mxgate on routing.toml.tmpl with Dovecot as
// [downstream] and, over its unix socket, the socket route, branch as the
// branch and partner routes (the branch route verifying with the file
// recipients), a Maildir route under maildir, refusing as the refusing
// route, and outbound as [outbound]'s keys.
func routingMxgate(t *testing.T, dc *dovecot, branch, refusing, maildir, recipients, outbound string) *mxgate {
	t.Helper()
	users := filepath.Join(t.TempDir(), "userdomains")
	if err := os.WriteFile(users, []byte("hosted.test: alice\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("testdata", "routing.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("@OUTBOUND@", outbound, "@BRANCH@", branch, "@REFUSING@", refusing, "@MAILDIR@", maildir,
		"@USERS@", users, "@RECIPIENTS@", recipients, "@SOCKET@", filepath.Join(dc.dir, "run", "lmtp")).Replace(string(b))
	tmpl := filepath.Join(t.TempDir(), "routing.toml.tmpl")
	if err := os.WriteFile(tmpl, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return startMxgateConfig(t, tmpl, dc.URL())
}

// btBlock is what -bt said about one address.
type btBlock struct {
	head   string // the first line
	router string // from "  router = NAME, transport = T"; "" without
	verify string // from "  verify = SOURCE"; "" without
}

// parseBt splits -bt output into one block per address, in order.
func parseBt(out string) []btBlock {
	var bs []btBlock
	routerRE := regexp.MustCompile(`^  router = (\S+), transport = \S+$`)
	for l := range strings.Lines(out) {
		l = strings.TrimSuffix(l, "\n")
		if !strings.HasPrefix(l, " ") {
			bs = append(bs, btBlock{head: l})
			continue
		}
		if m := routerRE.FindStringSubmatch(l); m != nil && len(bs) > 0 {
			bs[len(bs)-1].router = m[1]
		}
		if v, ok := strings.CutPrefix(l, "  verify = "); ok && len(bs) > 0 {
			bs[len(bs)-1].verify = v
		}
	}
	return bs
}

// TestRoutingAgreement: for 20 addresses covering every route kind, the
// router -bt names is the R= the daemon logs when a trusted client sends
// to them and -bt names each store's verification source, what -bt calls
// undeliverable is refused at RCPT (a Maildir domain without a user too:
// no bounce to a sender who may be forged), and every message lands in
// the store its route names: never a Maildir for a foreign domain.
func TestRoutingAgreement(t *testing.T) {
	t.Parallel()
	for _, out := range []string{"mx", "smarthost", "none"} {
		t.Run(out, func(t *testing.T) {
			dc := startDovecot(t)
			branch := startSink(t)
			refusing := startRefusingSink(t)
			recipients, err := filepath.Abs(filepath.Join("testdata", "routing-recipients"))
			if err != nil {
				t.Fatal(err)
			}
			maildir := filepath.Join(t.TempDir(), "maildir")
			outbound := `mode = "none"`
			var smart *sink
			switch out {
			case "smarthost":
				smart = startSink(t)
				outbound = fmt.Sprintf("mode      = \"smarthost\"\nsmarthost = %q\nstarttls  = \"none\"", smart.URL())
			case "mx":
				// The outside world: every foreign domain's MX is the
				// sink, found through a DNS server on loopback.
				smart = startSink(t)
				dns := dnstest.StartZone(t, dnstest.Zone{
					"gmail.example. MX":             {"gmail.example. 60 IN MX 10 mx1.gmail.example."},
					"mx1.gmail.example. A":          {"mx1.gmail.example. 60 IN A 127.0.0.1"},
					"foreign.test. MX":              {"foreign.test. 60 IN MX 5 mx.foreign.test."},
					"example.test.foreign.test. MX": {"example.test.foreign.test. 60 IN MX 5 mx.foreign.test."},
					"mx.foreign.test. A":            {"mx.foreign.test. 60 IN A 127.0.0.1"},
					"sub.example.test. A":           {"sub.example.test. 60 IN A 127.0.0.1"}, // no MX: the implicit MX
				})
				outbound = fmt.Sprintf("mode     = \"mx\"\nresolver = %q\nport     = %d\ncommand_timeout = \"10s\"", dns.Addr, smart.port)
			}
			g := routingMxgate(t, dc, branch.URL(), refusing.URL(), maildir, recipients, outbound).in(t)
			cases := routeCases(out, recipients)

			// -bt, on the daemon's own config.
			var addrs []string
			for _, c := range cases {
				addrs = append(addrs, c.rcpt)
			}
			bt := g.cli(append([]string{"-bt"}, addrs...)...)
			if bt.code != 2 || bt.stderr != "" {
				t.Errorf("-bt: exit %d, stderr %q; want 2 (some addresses are undeliverable)", bt.code, bt.stderr)
			}
			blocks := parseBt(bt.stdout)
			if len(blocks) != len(cases) {
				t.Fatalf("-bt printed %d blocks for %d addresses:\n%s", len(blocks), len(cases), bt.stdout)
			}
			for i, c := range cases {
				b := blocks[i]
				switch {
				case c.router != "":
					if b.head != c.logged || b.router != c.router || b.verify != c.verify {
						t.Errorf("-bt %s: %q router %q verify %q, want %q routed by %q verified by %q", c.rcpt, b.head, b.router, b.verify, c.logged, c.router, c.verify)
					}
				case c.rcptCode == 501:
					if !strings.HasPrefix(b.head, c.rcpt+" is undeliverable: malformed address") {
						t.Errorf("-bt %s: %q, want malformed", c.rcpt, b.head)
					}
				default:
					if !strings.Contains(b.head, " is undeliverable: ") {
						t.Errorf("-bt %s: %q, want undeliverable", c.rcpt, b.head)
					}
				}
			}

			// The daemon, from a trusted client: one message to every
			// address RCPT accepts.
			c := mustDial(t, "127.0.0.2", g.addr)
			c.expect(t, "EHLO client.test", 250)
			c.expect(t, "MAIL FROM:<sender@example.test>", 250)
			var accepted int
			for _, rc := range cases {
				r, err := c.cmd("RCPT TO:<" + rc.rcpt + ">")
				if err != nil {
					t.Fatal(err)
				}
				if r.Code != rc.rcptCode {
					t.Errorf("RCPT TO:<%s> -> %v, want %d", rc.rcpt, r, rc.rcptCode)
				}
				if r.Code == 250 {
					accepted++
				}
				if (out == "none" && rc.rcptCode == 550 && strings.Contains(rc.rcpt, "foreign") || strings.HasSuffix(rc.rcpt, "@shop.test")) && r.Text() != "5.1.2 Unrouteable address" {
					t.Errorf("RCPT TO:<%s> -> %v, want 550 5.1.2 Unrouteable address", rc.rcpt, r)
				}
			}
			if accepted == 0 {
				t.Fatal("no recipient accepted")
			}
			c.expect(t, "DATA", 354)
			if err := c.write(dataBytes([]byte("From: sender@example.test\nSubject: routing\n\nWhere does this go?\n"))); err != nil {
				t.Fatal(err)
			}
			r, err := c.read()
			if err != nil || r.Code != 250 || r.ID() == "" {
				t.Fatalf("end of data -> %v, %v; want 250 with an id", r, err)
			}
			id := r.ID()
			c.expect(t, "QUIT", 221)
			g.waitCompleted(id)
			g.waitSpoolEmpty()

			// R= of each delivered or failed recipient.
			lineRE := regexp.MustCompile(`^\S+ \S+ ` + regexp.QuoteMeta(id) + ` (=>|->|\*\*) (\S+) R=(\S+) `)
			routed := map[string]string{}
			for _, l := range g.mainlog() {
				if m := lineRE.FindStringSubmatch(l); m != nil {
					routed[m[2]] = m[1] + " R=" + m[3]
				}
			}
			for _, rc := range cases {
				if rc.router == "" {
					continue
				}
				want := " R=" + rc.router
				if got := routed[rc.logged]; !strings.HasSuffix(got, want) || strings.HasPrefix(got, "**") {
					t.Errorf("mainlog for %s: %q, want => or -> %s", rc.logged, got, want)
				}
			}

			// The bytes are where the routes say.
			if n := len(dc.newMail(t, "example.test", "user")); n != 2 {
				t.Errorf("Dovecot example.test/user holds %d messages, want 2 (user and User+tag)", n)
			}
			if n := len(dc.newMail(t, "example.test", "postmaster")); n != 1 {
				t.Errorf("Dovecot example.test/postmaster holds %d messages, want 1", n)
			}
			if n := len(dc.newMail(t, "example.test", "sender")); n != 0 {
				t.Errorf("Dovecot example.test/sender holds %d messages, want none: no recipient was accepted to be bounced", n)
			}
			if n := len(dc.newMail(t, "unix.test", "u")); n != 1 {
				t.Errorf("Dovecot unix.test/u holds %d messages, want 1 (over the unix socket)", n)
			}
			if got := g.rejectlog(); !slices.ContainsFunc(got, func(l string) bool {
				return strings.HasSuffix(l, "H=(client.test) [127.0.0.2] F=<sender@example.test> rejected RCPT <x@shop.test>: Unrouteable address (no Maildir for domain shop.test: it has no user in maildir_users)")
			}) {
				t.Errorf("rejectlog lacks the refusal of x@shop.test:\n%s", strings.Join(got, "\n"))
			}
			for dir, n := range map[string]int{"alice/hosted.test/info": 2, "alice/hosted.test/root": 1} {
				if got := maildirNew(t, filepath.Join(maildir, dir)); len(got) != n {
					t.Errorf("Maildir %s holds %d messages, want %d", dir, len(got), n)
				}
			}
			// Only alice's hosted.test: no foreign domain, no shop.test.
			if got := listDirs(t, maildir); !slices.Equal(got, []string{"alice"}) {
				t.Errorf("maildir root holds %v, want only alice", got)
			}
			if got := listDirs(t, filepath.Join(maildir, "alice")); !slices.Equal(got, []string{"hosted.test"}) {
				t.Errorf("alice's Maildirs: %v, want hosted.test only", got)
			}
			if fi, err := os.Stat(filepath.Join(maildir, "alice", "hosted.test", "info", "new")); err != nil || fi.Mode().Perm() != 0o750 {
				t.Errorf("Maildir new/: %v, mode %v; want 0750 (maildir_mode)", err, fi.Mode())
			}
			wantBranch := []string{"a@branch.test", "b.c@branch.test", "p@partner.test"}
			if got := sinkRcpts(t, branch); !slices.Equal(got, wantBranch) {
				t.Errorf("branch sink got %v, want %v", got, wantBranch)
			}
			if smart != nil {
				want := []string{"a@foreign.test", "b@sub.example.test", "c@example.test.foreign.test", "someone@gmail.example"}
				if got := sinkRcpts(t, smart); !slices.Equal(got, want) {
					t.Errorf("%s got %v, want %v", out, got, want)
				}
			}
			if out == "none" {
				rejected := strings.Join(g.rejectlog(), "\n")
				if !strings.Contains(rejected, "H=(client.test) [127.0.0.2] F=<sender@example.test> rejected RCPT <someone@gmail.example>: Unrouteable address") {
					t.Errorf("rejectlog lacks the Unrouteable refusal:\n%s", rejected)
				}
				bounceFrozen(t, g)
			}
		})
	}
}

// bounceFrozen: with outbound "none", the bounce to a foreign sender (of
// mail a store refused at delivery) is frozen with a line that names the
// address and why, and written into no store.
func bounceFrozen(t *testing.T, g *mxgate) {
	c := mustDial(t, "127.0.0.2", g.addr)
	c.expect(t, "EHLO client.test", 250)
	id := c.send(t, "someone@foreign.test", []string{"y@refusing.test"}, dataBytes([]byte("Subject: to nobody\n\nx\n")))
	c.expect(t, "QUIT", 221)
	var bounce string
	waitFor(t, drainTimeout, func() string {
		re := regexp.MustCompile(`^\S+ \S+ (\S+) <= <> R=` + regexp.QuoteMeta(id) + ` `)
		for _, l := range g.mainlog() {
			if m := re.FindStringSubmatch(l); m != nil {
				bounce = m[1]
			}
		}
		if bounce == "" || !g.logHas(logLine(bounce, `Frozen \(delivery error message\)$`)) {
			return "the bounce of " + id + " frozen"
		}
		return ""
	})
	g.requireLog(bounce, regexp.QuoteMeta(`** someone@foreign.test: Unrouteable address: foreign.test is not a relay domain and outbound.mode is "none": nothing sends mail there`))
	if out := g.mustCLI("-bp"); !strings.Contains(out, bounce+" <> *** frozen ***") {
		t.Errorf("-bp does not list %s as frozen:\n%s", bounce, out)
	}
}

// listDirs is the names in dir.
func listDirs(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// sinkRcpts is every recipient the sink got, sorted.
func sinkRcpts(t *testing.T, s *sink) []string {
	t.Helper()
	var rcpts []string
	for _, m := range s.messages(t) {
		rcpts = append(rcpts, m.rcpts...)
	}
	slices.Sort(rcpts)
	return rcpts
}
