package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOverQuotaDovecot: a real Dovecot with a 1k quota refuses a bigger
// message after the dot with 552 5.2.2, and the store's over_quota
// decides: "defer" keeps it queued, "bounce" returns it to its (outside)
// sender through the smarthost, "discard" drops it with Exim's blackhole
// line and no bounce.
func TestOverQuotaDovecot(t *testing.T) {
	requirePrograms(t, "dovecot", "doveadm")
	// peers.sh reads the quota from its environment: not parallel.
	t.Setenv("DOVECOT_QUOTA", "1k")
	const reply = "552 5.2.2 <u@example.test> Quota exceeded (mailbox for user is full)"
	tests := []struct {
		policy string
		line   string // after "ID "
	}{
		{"defer", regexp.QuoteMeta("== u@example.test R=downstream T=lmtp defer (-22) H=127.0.0.1 [127.0.0.1]: LMTP error from remote mail server after end of data: " + reply)},
		{"bounce", regexp.QuoteMeta("** u@example.test R=downstream T=lmtp H=127.0.0.1 [127.0.0.1]: LMTP error from remote mail server after end of data: " + reply)},
		{"discard", regexp.QuoteMeta(`=> :blackhole: <u@example.test> R=downstream C="`+reply+`"`) + "$"},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			dc := startDovecot(t)
			smart := startSink(t)
			g := startMxgateConfig(t, quotaConfig(t, tt.policy, smart.URL()), dc.URL()).in(t)
			c := mustDial(t, "127.0.0.1", g.addr)
			c.expect(t, "EHLO client.test", 250)
			big := "From: alice@sender.test\nSubject: too big\n\n" + strings.Repeat(strings.Repeat("x", 78)+"\n", 60)
			id := c.send(t, "alice@sender.test", []string{"u@example.test"}, dataBytes([]byte(big)))
			c.expect(t, "QUIT", 221)
			waitFor(t, drainTimeout, func() string {
				if !g.logHas(logLine(id, tt.line)) {
					return "a mainlog line " + tt.line
				}
				return ""
			})
			if n := len(dc.newMail(t, "example.test", "u")); n != 0 {
				t.Errorf("Dovecot stored %d messages for u over its quota", n)
			}
			switch tt.policy {
			case "defer":
				if !slices.Contains(g.spooled(), id) {
					t.Errorf("%s left the spool; over_quota = defer keeps it", id)
				}
			case "bounce":
				g.waitSpoolEmpty()
				if got := sinkRcpts(t, smart); !slices.Equal(got, []string{"alice@sender.test"}) {
					t.Errorf("smarthost got %v, want the bounce to alice@sender.test", got)
				}
			case "discard":
				g.waitCompleted(id)
				g.waitSpoolEmpty()
				if got := sinkRcpts(t, smart); len(got) != 0 {
					t.Errorf("smarthost got %v, want no bounce for a discarded recipient", got)
				}
			}
		})
	}
}

// quotaConfig is the e2e template with [downstream] over_quota = policy
// and outbound through the smarthost, for the bounces to outside senders.
func quotaConfig(t *testing.T, policy, smarthost string) string {
	t.Helper()
	b, err := os.ReadFile(testdata("mxgate.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(
		"{{.Outbound}}", fmt.Sprintf("mode      = \"smarthost\"\nsmarthost = %q\nstarttls  = \"none\"", smarthost),
		"[downstream]\n", fmt.Sprintf("[downstream]\nover_quota      = %q\n", policy),
	).Replace(string(b))
	path := filepath.Join(t.TempDir(), "quota.toml.tmpl")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
