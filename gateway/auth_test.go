package gateway

import (
	"crypto/tls"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"mxgate/config"
)

// withAuth is withTLS plus a submission listener (addr 2) and a
// passwd-file holding alice@example.test with password "secret".
func withAuth(t *testing.T, edit func(*config.Config)) func(*config.Config) {
	tlsOn := withTLS(t)
	h, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(pw, []byte("alice@example.test:{BLF-CRYPT}"+string(h)+"\nbob:"+string(h)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(c *config.Config) {
		tlsOn(c)
		c.ListenSubmission = []string{"127.0.0.1:0"}
		c.Auth.Backend = "passwd-file:" + pw
		c.Auth.BackendKind, c.Auth.BackendPath = "passwd-file", pw
		c.Auth.FailDelay = 0
		c.Auth.MaxFailures = 3
		if edit != nil {
			edit(c)
		}
	}
}

func plainResp(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// startTLS upgrades c after EHLO and says EHLO again; it returns the
// new client and the EHLO reply under TLS.
func startTLS(t *testing.T, c *client) (*client, string) {
	t.Helper()
	c.expect("STARTTLS", "220 ")
	tc := tls.Client(c.c, tlsClientConfig())
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = newClient(t, tc)
	return c, c.expect("EHLO client.test", "250-Hello client.test")
}

func TestAuthOffered(t *testing.T) {
	ts := newTestServer(t, withAuth(t, nil))
	for _, tt := range []struct {
		name       string
		addr       int
		implicit   bool
		beforeTLS  string // AUTH's reply on the plain connection
		afterTLS   bool   // AUTH advertised under TLS
		afterReply string
	}{
		{name: "listen (port 25)", addr: 0, beforeTLS: "538 5.7.11 Encryption required", afterReply: "503 5.5.1 AUTH not available"},
		{name: "listen_submission", addr: 2, beforeTLS: "538 5.7.11 Encryption required for requested authentication mechanism", afterTLS: true, afterReply: "235 2.0.0"},
		{name: "listen_tls", addr: 1, implicit: true, afterTLS: true, afterReply: "235 2.0.0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var c *client
			var ehlo string
			if tt.implicit {
				tc, err := tls.Dial("tcp", ts.addr(tt.addr), tlsClientConfig())
				if err != nil {
					t.Fatal(err)
				}
				c = newClient(t, tc)
				c.expect("", "220 ")
				ehlo = c.expect("EHLO client.test", "250-")
			} else {
				c = dial(t, ts.addr(tt.addr))
				got := c.expect("", "220 ")
				_ = got
				plain := c.expect("EHLO client.test", "250-")
				if strings.Contains(plain, "AUTH") {
					t.Errorf("AUTH advertised before TLS:\n%s", plain)
				}
				c.expect("AUTH PLAIN "+plainResp("alice@example.test", "secret"), tt.beforeTLS)
				c, ehlo = startTLS(t, c)
			}
			if got := strings.Contains(ehlo, "AUTH PLAIN LOGIN"); got != tt.afterTLS {
				t.Errorf("AUTH PLAIN LOGIN advertised under TLS = %v, want %v:\n%s", got, tt.afterTLS, ehlo)
			}
			c.expect("AUTH PLAIN "+plainResp("alice@example.test", "secret"), tt.afterReply)
		})
	}
}

func TestAuthSubmission(t *testing.T) {
	ts := newTestServer(t, withAuth(t, nil))
	c := dial(t, ts.addr(2))
	c.expect("", "220 ")
	c.expect("EHLO client.test", "250-")
	c, _ = startTLS(t, c)
	c.expect("AUTH PLAIN "+plainResp("alice@example.test", "wrong"), "535 5.7.8 Authentication credentials invalid")
	// LOGIN: user name and password each asked for.
	c.expect("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.expect(base64.StdEncoding.EncodeToString([]byte("alice@example.test")), "334 UGFzc3dvcmQ6")
	c.expect(base64.StdEncoding.EncodeToString([]byte("secret")), "235 2.0.0 Authentication succeeded")
	// The sender policy: another domain is not alice's.
	c.expect("MAIL FROM:<eve@other.test>", "550 5.7.1 Sender address <eve@other.test> not owned by authenticated user alice@example.test")
	// Relay to an outside domain; From: another address of the domain
	// gets Sender:, the client's own Sender: is replaced.
	reply := c.sendMessage("alice@example.test", []string{"x@outside.test"},
		"From: Bob <bob@example.test>\nSender: forged@example.test\nSubject: hi\n\nbody\n")
	if !strings.HasPrefix(reply, "250 2.0.0 OK id=") {
		t.Fatalf("DATA -> %q", reply)
	}
	// From: outside the domain is refused at end of data.
	reply = c.sendMessage("alice@example.test", []string{"x@outside.test"}, "From: eve@other.test\nSubject: no\n\nbody\n")
	if !strings.HasPrefix(reply, "550 5.7.1 From: address <eve@other.test> not owned by authenticated user alice@example.test") {
		t.Fatalf("DATA -> %q", reply)
	}
	c.expect("QUIT", "221 ")

	id := ts.onlyID()
	m := ts.message(id)
	if !strings.Contains(m, "Sender: alice@example.test\n") || strings.Contains(m, "forged@") {
		t.Errorf("message does not carry Sender: alice@example.test alone:\n%s", m)
	}
	if !strings.Contains(m, "with ESMTPSA id") {
		t.Errorf("Received: does not say ESMTPSA:\n%s", m)
	}
	ml := ts.logFile("mainlog")
	if !strings.Contains(ml, " P=esmtpsa X=") || !strings.Contains(ml, " A=login:alice@example.test S=") {
		t.Errorf("mainlog <= line lacks P=esmtpsa / A=login:alice@example.test:\n%s", ml)
	}
	rl := ts.logFile("rejectlog")
	for _, want := range []string{
		"plain authenticator failed for (client.test) [127.0.0.1]: 535 Incorrect authentication data (set_id=alice@example.test)",
		"Sender address <eve@other.test> not owned by authenticated user alice@example.test (auth.sender_policy login_domain)",
		"From: address <eve@other.test> not owned by authenticated user alice@example.test",
	} {
		if !strings.Contains(rl, want) {
			t.Errorf("rejectlog lacks %q:\n%s", want, rl)
		}
	}
}

func TestAuthThrottle(t *testing.T) {
	ts := newTestServer(t, withAuth(t, nil))
	login := func(pass, want string) *client {
		c := dial(t, ts.addr(2))
		c.expect("", "220 ")
		c.expect("EHLO client.test", "250-")
		c, _ = startTLS(t, c)
		c.expect("AUTH PLAIN "+plainResp("alice@example.test", pass), want)
		return c
	}
	for range 3 { // auth.max_failures
		login("wrong", "535 5.7.8")
	}
	c := login("secret", "421 4.7.0 mx.example.test Too many failed logins")
	if rest := c.rest(); rest != "" {
		t.Errorf("after 421: %q, want the connection closed", rest)
	}
	// The user is blocked from any address, the address for any user.
	login("secret", "421 4.7.0")
	c = login("x", "421 4.7.0")
	_ = c
	if rl := ts.logFile("rejectlog"); !strings.Contains(rl, "plain authenticator failed for (client.test) [127.0.0.1]: 421 too many failed logins (set_id=alice@example.test)") {
		t.Errorf("rejectlog lacks the blocked login:\n%s", rl)
	}
}

func TestAuthSenderPolicies(t *testing.T) {
	for _, tt := range []struct {
		policy, user, sender, want string
	}{
		{"login_domain", "alice@example.test", "carol@example.test", "250 "},
		{"login", "alice@example.test", "carol@example.test", "550 5.7.1"},
		{"login", "alice@example.test", "ALICE@example.test", "250 "},
		{"any", "bob", "whoever@any.test", "250 "},
		{"login_domain", "bob", "bob@example.test", "550 5.7.1 Sender address <bob@example.test> not owned by authenticated user bob"},
		{"login", "alice@example.test", "", "250 "},
	} {
		t.Run(tt.policy+" "+tt.user+" "+tt.sender, func(t *testing.T) {
			ts := newTestServer(t, withAuth(t, func(c *config.Config) { c.Auth.SenderPolicy = tt.policy }))
			c := dial(t, ts.addr(2))
			c.expect("", "220 ")
			c.expect("EHLO client.test", "250-")
			c, _ = startTLS(t, c)
			c.expect("AUTH PLAIN "+plainResp(tt.user, "secret"), "235 ")
			c.expect("MAIL FROM:<"+tt.sender+">", tt.want)
		})
	}
}
