package e2e

import (
	"strings"
	"testing"
)

// TestOpenRelayBattery sends, from a client outside trusted_networks, every
// known way of dressing a foreign recipient up as a local one. Each must be
// refused at RCPT (550 5.7.1 relay not permitted, or 501 5.1.3 bad address
// syntax), and smtp-sink must never see mail for a foreign domain.
func TestOpenRelayBattery(t *testing.T) {
	t.Parallel()
	s := startSink(t)
	g := startMxgate(t, s.URL())

	tricks := []struct {
		name, rcpt string
	}{
		{"plain foreign domain", "victim@foreign.test"},
		{"case variant of a foreign domain", "victim@FOREIGN.Test"},
		{"trailing dot", "victim@foreign.test."},
		{"percent hack", "victim%foreign.test@example.test"},
		{"percent hack, foreign last", "victim%example.test@foreign.test"},
		{"bang path", "foreign.test!victim@example.test"},
		{"source route", "@example.test:victim@foreign.test"},
		{"source route through two hops", "@example.test,@foreign.test:victim@foreign.test"},
		{"quoted local part holding @", `"victim@foreign.test"@example.test`},
		{"two @", "victim@foreign.test@example.test"},
		{"address literal", "victim@[192.0.2.1]"},
		{"IPv6 address literal", "victim@[IPv6:2001:db8::1]"},
		{"local domain as a subdomain of a foreign one", "victim@example.test.foreign.test"},
	}
	for _, tc := range tricks {
		t.Run(tc.name, func(t *testing.T) {
			c := mustDial(t, "127.0.0.1", g.addr)
			c.expect(t, "EHLO client.test", 250)
			c.expect(t, "MAIL FROM:<spammer@sender.test>", 250)
			r, err := c.cmd("RCPT TO:<" + tc.rcpt + ">")
			if err != nil {
				t.Fatal(err)
			}
			text := r.Text()
			refused := (r.Code == 550 && strings.HasPrefix(text, "5.7.1")) ||
				(r.Code == 501 && strings.HasPrefix(text, "5.1.3"))
			if !refused {
				t.Errorf("RCPT TO:<%s> from 127.0.0.1 -> %v, want 550 5.7.1 or 501 5.1.3", tc.rcpt, r)
			}
			c.cmd("QUIT")
		})
	}

	// The control: the same foreign recipient is fine from a trusted
	// address, so the refusals above come from the relay policy.
	trusted := mustDial(t, "127.0.0.2", g.addr)
	trusted.expect(t, "EHLO client.test", 250)
	trusted.expect(t, "MAIL FROM:<user@example.test>", 250)
	trusted.expect(t, "RCPT TO:<victim@foreign.test>", 250)
	trusted.expect(t, "QUIT", 221)

	// Mail for the protected domain still flows, so an empty sink below
	// would not merely mean a dead downstream.
	c := mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO client.test", 250)
	id := c.send(t, "alice@sender.test", []string{"user@example.test"}, dataBytes(readTestdata(t, "message.eml")))
	c.expect(t, "QUIT", 221)
	g.waitCompleted(id)
	g.waitSpoolEmpty()

	msgs := s.messages(t)
	if len(msgs) != 1 {
		t.Errorf("smtp-sink received %d messages, want only the 1 for user@example.test", len(msgs))
	}
	for _, m := range msgs {
		for _, rcpt := range m.rcpts {
			if rcpt != "user@example.test" {
				t.Errorf("%s: smtp-sink received mail for <%s>", m.path, rcpt)
			}
		}
	}
	g.stop()
}
