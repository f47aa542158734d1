package milter

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"

	gomilter "github.com/emersion/go-milter"
)

// connectMilter records the connect event's host name and macros.
type connectMilter struct {
	gomilter.NoOpMilter
	mu     sync.Mutex
	host   string
	macros map[string]string
}

func (c *connectMilter) Connect(host, _ string, _ uint16, _ net.IP, m *gomilter.Modifier) (gomilter.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.host, c.macros = host, m.Macros
	return gomilter.RespContinue, nil
}

// TestClientMacros: the client's reverse DNS reaches the milters as
// Sendmail and Postfix define the connect macros: {client_name} the
// confirmed name, {client_ptr} the PTR name, {client_resolve} how the
// lookup went, "_" the PTR name and address, marked when the name did
// not confirm; an unknown name is the address in brackets.
func TestClientMacros(t *testing.T) {
	tests := []struct {
		name                     string
		hostName, ptr, resolve   string
		host, under, cname, cptr string
		cresolve                 string
	}{
		{"confirmed", "mail.client.test", "mail.client.test", "OK",
			"mail.client.test", "mail.client.test [192.0.2.1]", "mail.client.test", "mail.client.test", "OK"},
		{"forged", "", "paypal.test", "FORGED",
			"[192.0.2.1]", "paypal.test [192.0.2.1] (may be forged)", "[192.0.2.1]", "paypal.test", "FORGED"},
		{"no PTR", "", "", "FAIL",
			"[192.0.2.1]", "[192.0.2.1] [192.0.2.1]", "[192.0.2.1]", "[192.0.2.1]", "FAIL"},
		{"lookup failed", "", "", "TEMP",
			"[192.0.2.1]", "[192.0.2.1] [192.0.2.1]", "[192.0.2.1]", "[192.0.2.1]", "TEMP"},
		{"no lookup", "", "", "",
			"[192.0.2.1]", "[192.0.2.1] [192.0.2.1]", "[192.0.2.1]", "[192.0.2.1]", "FAIL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &connectMilter{}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &gomilter.Server{NewMilter: func() gomilter.Milter { return m }, Actions: offerActions}
			go srv.Serve(v6Listener{ln})
			t.Cleanup(func() { srv.Close() })
			h, err := NewHost([]Options{testOptions("inet:"+ln.Addr().String(), "fake")}, func(string, string) {})
			if err != nil {
				t.Fatal(err)
			}
			s := h.NewSession(context.Background(), ConnInfo{Hostname: "mx.example.net", DaemonName: "mxgate",
				ClientIP: netip.MustParseAddr("192.0.2.1"), ClientPort: 4321,
				HostName: tt.hostName, HostPTR: tt.ptr, HostResolve: tt.resolve})
			defer s.Close()
			if d := s.Helo(context.Background(), "client.test"); d.Action != Continue {
				t.Fatalf("HELO: %v", d.Action)
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.host != tt.host {
				t.Errorf("connect host %q, want %q", m.host, tt.host)
			}
			for k, want := range map[string]string{"_": tt.under, "{client_name}": tt.cname, "{client_ptr}": tt.cptr,
				"{client_resolve}": tt.cresolve, "{client_addr}": "192.0.2.1", "{client_port}": "4321"} {
				if got := m.macros[k]; got != want {
					t.Errorf("macro %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}
