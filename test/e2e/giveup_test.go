package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"
)

// -Mg on a queued message: its recipient is failed, and the bounce goes
// through the real downstream (smtp-sink) to the sender at once.
func TestGiveUpBounces(t *testing.T) {
	requireCommand(t, "-Mg")
	s := startSink(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	// The admin commands work on a data_dir serve made; none creates one.
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "mxgate.toml")
	tmpl, err := template.ParseFiles(testdata("mxgate.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	// No daemon: the message stays queued until -Mg.
	if err := tmpl.Execute(&b, map[string]string{"Listen": "127.0.0.1:0", "DataDir": dataDir, "Downstream": s.URL(), "Outbound": outboundFor(s.URL())}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	mx := func(stdin string, args ...string) cliResult {
		t.Helper()
		return runWith(t, func(c *exec.Cmd) { c.Stdin = strings.NewReader(stdin) }, binary, append([]string{"-config", cfg}, args...)...)
	}
	if r := mx("Subject: quarterly report\n\nhello\n", "-bm", "-odq", "-f", "alice@example.test", "bob@example.test", "carol@example.test"); r.code != 0 || r.stderr != "" {
		t.Fatalf("-bm -odq: %+v", r)
	}
	r := mx("", "-bpi")
	id := strings.TrimSpace(r.stdout)
	if r.code != 0 || !regexp.MustCompile(`^\S{6}-\S{6}-\S{2}$`).MatchString(id) {
		t.Fatalf("-bpi: %+v, want one ID", r)
	}
	if r := mx("", "-Mg", id); r != (cliResult{}) {
		t.Fatalf("-Mg %s: %+v, want silence and status 0", id, r)
	}
	if r := mx("", "-bpc"); r.stdout != "0\n" {
		t.Errorf("-bpc after -Mg: %+v", r)
	}

	msgs := s.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("the sink got %d messages, want the one bounce", len(msgs))
	}
	m := msgs[0]
	if strings.Join(m.rcpts, " ") != "alice@example.test" {
		t.Errorf("bounce recipients %v, want alice@example.test", m.rcpts)
	}
	raw := strings.ReplaceAll(m.raw, "\r\n", "\n")
	for _, want := range []string{
		"Subject: Mail delivery failed: returning message to sender",
		"Final-Recipient: rfc822; bob@example.test",
		"Final-Recipient: rfc822; carol@example.test",
		"Action: failed",
		"delivery cancelled by administrator",
		"Subject: quarterly report",
	} {
		if !strings.Contains(raw, want) {
			t.Errorf("the bounce has no %q:\n%s", want, raw)
		}
	}

	log, err := os.ReadFile(filepath.Join(dataDir, "log", "mainlog"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for l := range strings.Lines(string(log)) {
		lines = append(lines, strings.TrimSuffix(l[len("2006-01-02 15:04:05 "):], "\n"))
	}
	text := strings.Join(lines, "\n")
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`(?m)^` + id + ` cancelled by ` + regexp.QuoteMeta(me.Username) + `$`,
		`(?m)^` + id + ` \*\* bob@example\.test: delivery cancelled by administrator$`,
		`(?m)^` + id + ` \*\* carol@example\.test: delivery cancelled by administrator$`,
		`(?m)^(\S+) <= <> R=` + id + ` U=` + regexp.QuoteMeta(me.Username) + ` P=local S=\d+$`,
		`(?m)^` + id + ` Completed$`,
		`(?m)^\S+ => alice@example\.test R=downstream T=smtp H=127\.0\.0\.1 \[127\.0\.0\.1\]`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("mainlog has no line matching %s:\n%s", re, text)
		}
	}
}

// serve says where it listens, which config it read and where it logs,
// on stderr, and nothing else.
func TestServeStartLine(t *testing.T) {
	s := startSink(t)
	g := startMxgate(t, s.URL())
	want := "mxgate: listening on " + g.addr + " (smtp); config " + g.cfgPath + "; logging to " + filepath.Join(g.dataDir, "log") + "\n"
	if got := g.output(); got != want {
		t.Errorf("serve's output:\n%q\nwant:\n%q", got, want)
	}
	g.stop()
}
