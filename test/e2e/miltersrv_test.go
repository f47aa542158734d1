package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-milter"

	"mxgate/internal/peertest"
)

// milterServerConf is the [outbound] keys of the tests' config followed
// by a [milter_server] on port.
func milterServerConf(port int) string {
	return fmt.Sprintf("mode = \"none\"\n\n[milter_server]\nlisten = \"inet:127.0.0.1:%d\"", port)
}

// milterMessage plays an MTA's milter session for one message from
// 192.0.2.9 with queue ID id and returns the end's action.
func milterMessage(t *testing.T, addr, id string) *milter.Action {
	t.Helper()
	c := milter.NewClientWithOptions("tcp", addr, milter.ClientOptions{
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		ActionMask:   milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine | milter.OptChangeBody,
		ProtocolMask: milter.OptNoUnknown | milter.OptHeaderLeadingSpace,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	steps := []func() (*milter.Action, error){
		func() (*milter.Action, error) {
			return s.Conn("client.example.org", milter.FamilyInet, 40000, "192.0.2.9")
		},
		func() (*milter.Action, error) { return s.Helo("client.example.org") },
		func() (*milter.Action, error) {
			if err := s.Macros(milter.CodeMail, "i", id); err != nil {
				return nil, err
			}
			return s.Mail("<alice@example.org>", nil)
		},
		func() (*milter.Action, error) { return s.Rcpt("<bob@example.test>", nil) },
		func() (*milter.Action, error) { return s.HeaderField("Subject", " hello") },
		func() (*milter.Action, error) { return s.HeaderEnd() },
		func() (*milter.Action, error) { return s.BodyChunk([]byte("hello\r\n")) },
	}
	for i, step := range steps {
		act, err := step()
		if err != nil || act.Code != milter.ActContinue {
			t.Fatalf("step %d: %+v, %v", i, act, err)
		}
	}
	_, act, err := s.End()
	if err != nil {
		t.Fatal(err)
	}
	return act
}

// TestMilterServerInServe: serve runs the milter server beside its SMTP
// listener; an MTA's message is logged under the MTA's queue ID, a
// reload keeps it serving, SIGTERM stops both.
func TestMilterServerInServe(t *testing.T) {
	port := peertest.FreePort(t, false)
	g := startMxgateOutbound(t, testdata("mxgate.toml.tmpl"), "smtp://127.0.0.1:1", milterServerConf(port))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if act := milterMessage(t, addr, "5MiLt1"); act.Code != milter.ActAccept {
		t.Fatalf("end of message: %+v, want accept", act)
	}
	g.requireLog("5MiLt1", `<= alice@example\.org H=client\.example\.org \[192\.0\.2\.9\]:40000 P=milter S=\d+`)
	g.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, func() string {
		if g.logHas(regexp.MustCompile(`configuration reloaded: generation 2`)) {
			return ""
		}
		return "no reload line"
	})
	if act := milterMessage(t, addr, "5MiLt2"); act.Code != milter.ActAccept {
		t.Fatalf("end of message after the reload: %+v, want accept", act)
	}
	g.stop()
}

// TestMilterCommand: `mxgate milter` serves the milter alone, with no SMTP
// listener, and stops on SIGTERM with status 0.
func TestMilterCommand(t *testing.T) {
	dir := t.TempDir()
	port := peertest.FreePort(t, false)
	smtpPort := peertest.FreePort(t, false)
	admin := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
	cfg := fmt.Sprintf("hostname = \"mx.example.test\"\nlisten = [\"127.0.0.1:%d\"]\ndata_dir = %q\nrelay.domains = [\"example.test\"]\ndownstream.url = \"smtp://127.0.0.1:1\"\nadmin.listen = %q\n\n[milter_server]\nlisten = \"inet:127.0.0.1:%d\"\n",
		smtpPort, filepath.Join(dir, "data"), admin, port)
	if os.Geteuid() == 0 {
		cfg = "run_as_root = true\n" + cfg
	}
	path := filepath.Join(dir, "mxgate.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd := exec.Command(binary, "milter", "-config", path)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	done := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(done) }()
	defer func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	}()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, readyTimeout, func() string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err.Error()
		}
		c.Close()
		return ""
	})
	if act := milterMessage(t, addr, "6MiLt1"); act.Code != milter.ActAccept {
		t.Fatalf("end of message: %+v, want accept", act)
	}
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", smtpPort)); err == nil {
		c.Close()
		t.Error("mxgate milter listens for SMTP")
	}
	// Its admin listener counts the message and is ready without SMTP.
	if _, body := httpGet(t, "http://"+admin+"/metrics"); !strings.Contains(body, `mxgate_messages_total{action="accepted"} 1`) {
		t.Errorf("/metrics lacks the accepted message:\n%s", grepLines(body, "mxgate_messages_total"))
	}
	if code, body := httpGet(t, "http://"+admin+"/readyz"); code != 200 {
		t.Errorf("/readyz -> %d %s", code, body)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		if waitErr != nil {
			t.Fatalf("mxgate milter after SIGTERM: %v; output:\n%s", waitErr, out.String())
		}
	case <-time.After(exitTimeout):
		t.Fatalf("mxgate milter still running %v after SIGTERM", exitTimeout)
	}
	main, err := os.ReadFile(filepath.Join(dir, "data", "log", "mainlog"))
	if err != nil || !strings.Contains(string(main), "6MiLt1 <= alice@example.org H=client.example.org [192.0.2.9]:40000 P=milter") {
		t.Errorf("mainlog (%v):\n%s", err, main)
	}
}
