package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"mxgate/internal/dnstest"
	"mxgate/internal/peertest"
	"mxgate/internal/tlstest"
)

// configCheck runs `mxgate config check -config FILE [ARGS]` and returns
// its stdout, stderr and exit status.
func configCheck(t *testing.T, file string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, append([]string{"config", "check", "-config", file}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("running %s config check: %v", binary, err)
		}
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// TestConfigCheckBad: a config with a mistake makes `config check` name
// the file and line of the mistake and exit non-zero.
func TestConfigCheckBad(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file string
		line string // FILE:LINE the error must name
		key  string // the key it must name
		also string // and what else the error must say
	}{
		{"bad-cidr.toml", "7", "relay.trusted_networks", ""},
		{"bad-unknown-key.toml", "7", "smtp.max_recipents", "(did you mean smtp.max_recipients?)"},
		{"bad-duration.toml", "12", "queue.run_interval", ""},
		{"tls-missing.toml", "5", "tls.cert", "open /nonexistent/mxgate/cert.pem: no such file or directory"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := testdata(tc.file)
			stdout, stderr, status := configCheck(t, path)
			if status == 0 {
				t.Errorf("config check %s: exit status 0, want non-zero; stdout:\n%s", tc.file, stdout)
			}
			if want := path + ":" + tc.line + ":"; !strings.Contains(stderr, want) {
				t.Errorf("config check %s: stderr %q does not name %s", tc.file, stderr, want)
			}
			if !strings.Contains(stderr, tc.key) {
				t.Errorf("config check %s: stderr %q does not name the key %s", tc.file, stderr, tc.key)
			}
			if !strings.Contains(stderr, tc.also) {
				t.Errorf("config check %s: stderr %q does not say %s", tc.file, stderr, tc.also)
			}
		})
	}
}

// TestConfigCheckGood: a valid config prints the effective configuration,
// its own values and the defaults filled in, as TOML, and exits 0.
func TestConfigCheckGood(t *testing.T) {
	t.Parallel()
	stdout, stderr, status := configCheck(t, testdata("good.toml"))
	if status != 0 {
		t.Fatalf("config check good.toml: exit status %d, want 0; stderr:\n%s", status, stderr)
	}
	var eff struct {
		Hostname string   `toml:"hostname"`
		Listen   []string `toml:"listen"`
		DataDir  string   `toml:"data_dir"`
		SMTP     struct {
			MaxRecipients int `toml:"max_recipients"`
		} `toml:"smtp"`
		Relay struct {
			Domains []string `toml:"domains"`
		} `toml:"relay"`
		Downstream struct {
			URL string `toml:"url"`
		} `toml:"downstream"`
	}
	if err := toml.Unmarshal([]byte(stdout), &eff); err != nil {
		t.Fatalf("config check output is not TOML: %v\n%s", err, stdout)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"hostname", eff.Hostname, "mx.example.test"},
		{"listen", strings.Join(eff.Listen, ","), "127.0.0.1:2525"},
		{"data_dir", eff.DataDir, "/var/spool/mxgate"},
		{"relay.domains", strings.Join(eff.Relay.Domains, ","), "example.test"},
		{"downstream.url", eff.Downstream.URL, "lmtp://127.0.0.1:24"},
		{"smtp.max_recipients (default)", eff.SMTP.MaxRecipients, 100},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("effective %s = %v, want %v; output:\n%s", c.name, c.got, c.want, stdout)
		}
	}
}

// configFile writes testdata/e2e/TMPL with each @KEY@ of subst replaced
// and returns its path.
func configFile(t *testing.T, tmpl string, subst ...string) string {
	t.Helper()
	b, err := os.ReadFile(testdata(tmpl))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), strings.TrimSuffix(tmpl, ".tmpl"))
	if err := os.WriteFile(path, []byte(strings.NewReplacer(subst...).Replace(string(b))), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigCheckWarnings: a CIDR with host bits set is a warning on
// stderr, FILE:LINE first, and the status stays 0; the certificate is
// loaded and its names printed; sizes and durations print in the units
// the file wrote them, defaults in natural ones.
func TestConfigCheckWarnings(t *testing.T) {
	t.Parallel()
	cert, key := tlstest.Files(t, "mx.example.test", "127.0.0.1")
	path := configFile(t, "units.toml.tmpl", "@CERT@", cert, "@KEY@", key)
	stdout, stderr, status := configCheck(t, path)
	if status != 0 {
		t.Fatalf("config check: exit status %d, want 0; stderr:\n%s", status, stderr)
	}
	// The certificate of tlstest expires within the hour: a warning too.
	want := path + ":17: warning: 192.168.1.1/24 has host bits set: it means 192.168.1.0/24\n"
	if !strings.HasPrefix(stderr, path+":6: warning: certificate "+cert+" expires on ") || !strings.HasSuffix(stderr, want) ||
		strings.Count(stderr, "\n") != 2 {
		t.Errorf("stderr:\n%s\nwant the certificate's warning at line 6, then\n%s", stderr, want)
	}
	for _, line := range []string{
		"# tls: " + cert + " for mx.example.test, 127.0.0.1, expires ",
		"max_message_size = '50MB'\n",
		"command_timeout = '300s'\n",
		"data_timeout = '5m'\n",
		"shutdown_timeout = '30s'\n",
		"trusted_networks = ['127.0.0.1/32', '192.168.1.0/24']\n",
	} {
		if !strings.Contains(stdout, line) {
			t.Errorf("stdout lacks %q:\n%s", line, stdout)
		}
	}
}

// TestConfigCheckProbe: --probe connects to each real peer of a config
// (spamd, clamd, rspamd as a milter, rbldnsd's lists, Dovecot's LMTP and
// userdb socket, smtp-sink) and a fake resolver, and prints one line
// each; with every required peer up the status is 0. Then clamd is
// pointed at a closed port: its line says why, and the status is 1.
func TestConfigCheckProbe(t *testing.T) {
	t.Parallel()
	spamd := startScanner(t, "spamd")
	clamd := startScanner(t, "clamd")
	rspamd := startScanner(t, "rspamd")
	rbl := startRbldnsd(t)
	dove := startDovecotUsers(t)
	sink := startSink(t)
	resolver := dnstest.StartZone(t, dnstest.Zone{". NS": {". 3600 IN NS a.root-servers.net."}})
	subst := []string{"@SPAMD@", spamd, "@CLAMD@", clamd, "@RSPAMD@", rspamd, "@RBL@", rbl,
		"@RESOLVER@", resolver.Addr, "@LMTP@", dove.URL(), "@USERDB@", dove.socket(), "@SINK@", sink.URL()}

	stdout, stderr, status := configCheck(t, configFile(t, "probe.toml.tmpl", subst...), "--probe")
	if status != 0 || stderr != "" {
		t.Errorf("config check --probe: exit status %d, stderr %q; want 0 and nothing", status, stderr)
	}
	q := regexp.QuoteMeta
	want := []string{
		`# mxgate configuration \(from .*\): OK`,
		`spamd ` + q(spamd) + `: OK \(SPAMD/1\.5 PONG, \d+ ms\)`,
		`clamd ` + q(clamd) + `: OK \(PONG, \d+ ms\)`,
		`milter rspamd inet:` + q(rspamd) + `: OK \(negotiated actions 0x[0-9a-f]+, steps 0x[0-9a-f]+, \d+ ms\)`,
		// rbldnsd is the lists' server, not a recursive resolver.
		`resolver ` + q(rbl) + `: FAILED, not required \(.*\)`,
		`resolver ` + q(resolver.Addr) + `: OK \(answered \./NS: NOERROR, 1 records, \d+ ms\)`,
		`dnsbl bl\.test: OK \(2\.0\.0\.127\.bl\.test listed: 127\.0\.0\.2, \d+ ms\)`,
		`dnsbl dbl\.test: OK \(test\.dbl\.test not listed \(NXDOMAIN\): the list lacks its test entry, \d+ ms\)`,
		`downstream ` + q(dove.URL()) + `: OK \(220 .*; LHLO ok; no STARTTLS, \d+ ms\)`,
		`downstream userdb ` + q(dove.socket()) + `: OK \(VERSION 1 handshake, \d+ ms\)`,
		`route sink ` + q(sink.URL()) + `: OK \(220 .*; EHLO ok; no STARTTLS, \d+ ms\)`,
	}
	t.Logf("config check --probe:\n%s", stdout)
	matchLines(t, stdout, want)

	closed := "127.0.0.1:" + strconv.Itoa(peertest.FreePort(t, false))
	subst[3] = closed
	stdout, _, status = configCheck(t, configFile(t, "probe.toml.tmpl", subst...), "--probe")
	if status != 1 {
		t.Errorf("config check --probe with clamd down: exit status %d, want 1", status)
	}
	want[2] = `clamd ` + q(closed) + `: FAILED \(connection refused\)`
	matchLines(t, stdout, want)
}

// matchLines checks that the lines of out match want, one pattern each.
func matchLines(t *testing.T, out string, want []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != len(want) {
		t.Errorf("%d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i := range min(len(lines), len(want)) {
		if !regexp.MustCompile("^" + want[i] + "$").MatchString(lines[i]) {
			t.Errorf("line %d %q does not match %s", i+1, lines[i], want[i])
		}
	}
}

// TestServeLogsWarnings: serve writes the config's warnings to the
// mainlog at start, as config check prints them, and runs.
func TestServeLogsWarnings(t *testing.T) {
	t.Parallel()
	sink := startSink(t)
	g := startMxgateConfig(t, testdata("hostbits.toml.tmpl"), sink.URL())
	// Line 14 of the template; one more when the helper put run_as_root
	// in front of it.
	line := 14
	if os.Geteuid() == 0 {
		line++
	}
	want := regexp.MustCompile(regexp.QuoteMeta(fmt.Sprintf("%s:%d: warning: 192.0.2.1/24 has host bits set: it means 192.0.2.0/24", g.cfgPath, line)) + "$")
	if !g.logHas(want) {
		t.Errorf("mainlog lacks %s:\n%s", want, strings.Join(g.mainlog(), "\n"))
	}
}
