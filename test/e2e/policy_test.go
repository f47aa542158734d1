package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"mxgate/internal/peertest"
)

// TestPolicyServerOnly: serve with listen = [] runs only the policy
// server: Postfix's requests on one connection are answered (a rate
// limit over on the third message, with gateway mode's code, text and
// rejectlog line), counted on the admin listener's /metrics, /readyz up,
// no SMTP listener, no spool, and SIGTERM stops it.
func TestPolicyServerOnly(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	policy := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
	admin := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
	tmpl, err := template.ParseFiles(testdata("policy-only.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg bytes.Buffer
	if os.Geteuid() == 0 {
		cfg.WriteString("run_as_root = true\n")
	}
	if err := tmpl.Execute(&cfg, map[string]string{"DataDir": dataDir, "Policy": policy, "Admin": admin}); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "mxgate.toml")
	if err := os.WriteFile(cfgPath, cfg.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(binary, "serve", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	done := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	})
	var c net.Conn
	for deadline := time.Now().Add(readyTimeout); ; time.Sleep(20 * time.Millisecond) {
		if c, err = net.Dial("tcp", policy); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no policy server on %s: %v; output:\n%s", policy, err, out.String())
		}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	for i, want := range []string{"DUNNO", "DUNNO", "550 5.7.1 Rate limit exceeded"} {
		fmt.Fprintf(c, "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.7\nclient_name=unknown\n"+
			"helo_name=client.test\nsender=s@sender.test\nrecipient=u@example.test\ninstance=e2e.%d\nqueue_id=4QID%d\n\n", i, i)
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("request %d: %v; output:\n%s", i, err, out.String())
		}
		if blank, _ := r.ReadString('\n'); line != "action="+want+"\n" || blank != "\n" {
			t.Errorf("request %d: %q %q, want action=%s", i, line, blank, want)
		}
	}
	reject, err := os.ReadFile(filepath.Join(dataDir, "log", "rejectlog"))
	if err != nil {
		t.Fatal(err)
	}
	if want := " 4QID2 H=(client.test) [192.0.2.7] rejected MAIL <s@sender.test>: rate limit exceeded"; !strings.Contains(string(reject), want) {
		t.Errorf("rejectlog:\n%s\nwant a line with %q", reject, want)
	}
	// The admin listener runs without SMTP: the refusal is counted, and
	// /readyz names the policy server's listener as up.
	if _, body := httpGet(t, "http://"+admin+"/metrics"); !strings.Contains(body, `mxgate_rcpt_refused_total{reason="ratelimit",stage="mail"} 1`) {
		t.Errorf("/metrics lacks the refusal:\n%s", grepLines(body, "mxgate_rcpt_refused_total"))
	}
	if code, body := httpGet(t, "http://"+admin+"/readyz"); code != 200 {
		t.Errorf("/readyz -> %d %s", code, body)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "spool")); !os.IsNotExist(err) {
		t.Errorf("a spool with listen = []: %v", err)
	}
	if _, err := net.DialTimeout("tcp", "127.0.0.1:2525", time.Second); err == nil {
		t.Errorf("an SMTP listener on the default 127.0.0.1:2525 with listen = []")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		if waitErr != nil {
			t.Errorf("after SIGTERM: %v; output:\n%s", waitErr, out.String())
		}
	case <-time.After(exitTimeout):
		t.Fatalf("still running %v after SIGTERM", exitTimeout)
	}
	main, _ := os.ReadFile(filepath.Join(dataDir, "log", "mainlog"))
	if !strings.Contains(string(main), "no SMTP listener, policy server on "+policy) || !strings.Contains(string(main), "mxgate daemon stopped") {
		t.Errorf("mainlog:\n%s", main)
	}
}
