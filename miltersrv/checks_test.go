package miltersrv

import (
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-milter"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/filters"
	"mxgate/internal/dnstest"
	"mxgate/route"
)

// TestPipelineChecks runs the checks package checks.Build makes from a
// config: a client on a DNS list is refused at RCPT with the gateway's
// reply, and one on no list may send to a domain that is not a relay
// domain (the relay policy is the MTA's) and gets X-RBL-Score when its
// score reaches tag_score.
func TestPipelineChecks(t *testing.T) {
	ns := dnstest.StartZone(t, dnstest.Zone{
		"7.2.0.192.bl.test. A":   {"7.2.0.192.bl.test. 300 IN A 127.0.0.2"},
		"7.2.0.192.bl.test. TXT": {`7.2.0.192.bl.test. 300 IN TXT "Listed in bl.test"`},
		"8.2.0.192.tl.test. A":   {"8.2.0.192.tl.test. 300 IN A 127.0.0.2"},
	})
	h := newHarnessWith(t, func(c *config.Config) {
		c.Relay.Domains = []string{"example.test"}
		c.RBL.Lists = []config.RBLList{
			{Zone: "bl.test", Kind: "ip", Weight: 2, OnError: "ignore"},
			{Zone: "tl.test", Kind: "ip", Weight: 1, OnError: "ignore"},
		}
		c.RBL.Resolver = config.StringList{ns.Addr}
		c.RBL.RejectScore, c.RBL.TagScore = 2, 1
		c.RBL.Timeout = config.Duration(2 * time.Second)
	}, func(cfg *config.Config, lg filters.Logger) *filters.Pipeline {
		pl, err := checks.Build(cfg, lg, route.New(checks.RouteOptions(cfg)), false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pl.Close() })
		return pl.Pipeline
	})

	s := h.session()
	act, err := s.Conn("bad.example.org", milter.FamilyInet, 40000, "192.0.2.7")
	must(t, act, err, milter.ActContinue)
	act, err = s.Helo("bad.example.org")
	must(t, act, err, milter.ActContinue)
	act, err = s.Mail("<a@example.org>", nil)
	must(t, act, err, milter.ActContinue)
	act, err = s.Rcpt("<bob@example.test>", nil)
	if err != nil {
		t.Fatal(err)
	}
	const want = "5.7.1 Service unavailable; client [192.0.2.7] blocked using bl.test (Listed in bl.test)"
	if act.Code != milter.ActReplyCode || act.SMTPCode != 554 || act.SMTPText != want {
		t.Errorf("RCPT of a listed client: %c %d %q, want 554 %q", act.Code, act.SMTPCode, act.SMTPText, want)
	}
	s.Close()
	h.wantLog("rejectlog", "F=<a@example.org> rejected RCPT <bob@example.test>")

	s = h.session()
	defer s.Close()
	act, err = s.Conn("ok.example.org", milter.FamilyInet, 40001, "192.0.2.8")
	must(t, act, err, milter.ActContinue)
	s.Helo("ok.example.org")
	act, err = s.Mail("<a@example.org>", nil)
	must(t, act, err, milter.ActContinue)
	act, err = s.Rcpt("<someone@elsewhere.example>", nil)
	must(t, act, err, milter.ActContinue)
	s.HeaderField("Subject", " hi")
	s.HeaderEnd()
	s.BodyChunk([]byte("hello\r\n"))
	mods, act, err := s.End()
	must(t, act, err, milter.ActAccept)
	var stamps []string
	for _, m := range mods {
		stamps = append(stamps, m.HeaderName+":"+m.HeaderValue)
	}
	if len(stamps) != 1 || !strings.HasPrefix(stamps[0], "X-RBL-Score: 1") {
		t.Errorf("modifications %q, want X-RBL-Score: 1 ...", stamps)
	}
}
