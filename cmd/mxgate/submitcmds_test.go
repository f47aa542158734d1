package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mxgate/config"
	"mxgate/localsubmit"
	"mxgate/route"
)

// maildirFiles returns the delivered messages under root, by path
// relative to it with the unique file name dropped ("example.test/u/new").
func maildirFiles(t *testing.T, root string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		got[rel] = string(b)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return got
}

// submitConfig is gatewayConfig with its data_dir made, as the daemon
// makes it: submission never creates it.
func submitConfig(t *testing.T, url string) (cfgPath, dataDir string) {
	t.Helper()
	cfgPath, dataDir = gatewayConfig(t, url)
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return cfgPath, dataDir
}

func TestSubmitCommand(t *testing.T) {
	login, _ := invoker()
	input := "To: Joe <joe@example.test>\r\n" +
		"Bcc: hidden@example.test\r\n" +
		"Subject: report\r\n" +
		"\r\n" +
		"line one\r\n" +
		"..two dots stay\r\n" +
		".\r\n" +
		"after the dot\r\n"
	tests := []struct {
		name       string
		args       []string
		input      string
		wantRcpts  []string // maildir directories, in envelope order
		wantSender string
		wantHeader string // the message's header after Received:, minus Date:
		wantBody   string
	}{
		{
			name:       "-t: recipients from the header, Bcc: removed, a lone dot ends input",
			args:       []string{"-t", "-f", "robot@example.test", "-F", "Report Robot"},
			input:      input,
			wantRcpts:  []string{"example.test/joe/new", "example.test/hidden/new"},
			wantSender: "robot@example.test",
			wantHeader: "To: Joe <joe@example.test>\nSubject: report\nMessage-ID: <EID@mx.example.test>\nFrom: \"Report Robot\" <robot@example.test>\n",
			wantBody:   "line one\n..two dots stay\n",
		},
		{
			name:       "-bm -i: command-line recipients, the dot is text, Bcc: kept",
			args:       []string{"-bm", "-i", "-odi", "-fother@example.test", "root"},
			input:      input,
			wantRcpts:  []string{"mx.example.test/root/new"},
			wantSender: "other@example.test",
			wantHeader: "To: Joe <joe@example.test>\nBcc: hidden@example.test\nSubject: report\nMessage-ID: <EID@mx.example.test>\nFrom: other@example.test\n",
			wantBody:   "line one\n..two dots stay\n.\nafter the dot\n",
		},
		{
			name:       "-t minus the command line's addresses; default sender; own Message-ID kept",
			args:       []string{"-t", "-oi", "joe@example.test"},
			input:      "To: joe@example.test, root\nMessage-ID: <abc@client.test>\nDate: Mon, 02 Jan 2006 15:04:05 +0000\n\nhi",
			wantRcpts:  []string{"mx.example.test/root/new"},
			wantSender: login + "@mx.example.test",
			wantHeader: "To: joe@example.test, root\nMessage-ID: <abc@client.test>\nFrom: " + login + "@mx.example.test\n",
			wantBody:   "hi\n",
		},
	}
	dateLine := regexp.MustCompile(`(?m)^Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [-+]\d{4}\n`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "maildir")
			cfg, dataDir := submitConfig(t, "maildir://"+root)
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"mxgate", "-config", cfg}, tt.args...), strings.NewReader(tt.input), &stdout, &stderr)
			if code != 0 || stdout.Len() != 0 || stderr.Len() != 0 {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
			}

			mainlog, err := os.ReadFile(filepath.Join(dataDir, "log", "mainlog"))
			if err != nil {
				t.Fatal(err)
			}
			ml := queueID.ReplaceAllString(string(mainlog), "ID")
			ml = regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d `).ReplaceAllString(ml, "")
			arrival := regexp.MustCompile(`(?m)^ID <= ` + regexp.QuoteMeta(tt.wantSender) + ` U=` + regexp.QuoteMeta(login) + ` P=local S=\d+ id=\S+\n`)
			if !arrival.MatchString(ml) {
				t.Errorf("mainlog lacks the arrival %v:\n%s", arrival, ml)
			}
			for i, r := range tt.wantRcpts {
				flag := "->"
				if i == 0 {
					flag = "=>"
				}
				addr := strings.Split(r, "/")[1] + "@" + strings.Split(r, "/")[0]
				if !strings.Contains(ml, "ID "+flag+" "+addr+" R=downstream T=maildir\n") {
					t.Errorf("mainlog lacks the delivery to %s:\n%s", addr, ml)
				}
			}
			if !strings.HasSuffix(ml, "ID Completed\n") {
				t.Errorf("mainlog does not end with Completed:\n%s", ml)
			}

			got := maildirFiles(t, root)
			if len(got) != len(tt.wantRcpts) {
				t.Errorf("delivered to %v, want %v", keys(got), tt.wantRcpts)
			}
			for _, r := range tt.wantRcpts {
				msg, ok := got[r]
				if !ok {
					t.Errorf("nothing delivered to %s (got %v)", r, keys(got))
					continue
				}
				msg = queueID.ReplaceAllString(msg, "ID")
				if n := len(dateLine.FindAllString(msg, -1)); n != 1 {
					t.Errorf("%d Date: headers in\n%s", n, msg)
				}
				msg = dateLine.ReplaceAllString(msg, "")
				rcpt := strings.Split(r, "/")[1] + "@" + strings.Split(r, "/")[0]
				received := "Received: from " + login + " by mx.example.test with local (mxgate)\n" +
					"\t(envelope-from <" + tt.wantSender + ">)\n\tid ID"
				if len(tt.wantRcpts) == 1 {
					received += "\n\tfor <" + rcpt + ">"
				}
				prefix := "Return-Path: <" + tt.wantSender + ">\nDelivered-To: " + rcpt + "\n" + received + "; "
				if !strings.HasPrefix(msg, prefix) {
					t.Errorf("%s starts:\n%s\nwant:\n%s", r, msg, prefix)
					continue
				}
				_, rest, _ := strings.Cut(msg[len(prefix):], "\n")
				if want := tt.wantHeader + "\n" + tt.wantBody; rest != want {
					t.Errorf("%s after Received:\n%s\nwant:\n%s", r, rest, want)
				}
			}
		})
	}
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestSubmitCommandErrors(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		input string
		want  string // stderr
		code  int
	}{
		{"no recipients", []string{"-bm"}, "Subject: x\n\nhi\n", "mxgate: no recipients\n", 1},
		{"-t without any", []string{"-t"}, "Subject: x\n\nhi\n", "mxgate: no recipients\n", 1},
		{"-t with only the command line's", []string{"-t", "u@example.test"}, "To: u@example.test\n\nhi\n", "mxgate: no recipients\n", 1},
		{"invalid recipient", []string{"-bm", "u@"}, "hi\n", "mxgate: <u@>: recipient address rejected: malformed address: \"u@\": empty domain\nmxgate: no valid recipients: message not queued\n", 1},
		{"unroutable", []string{"-bm", "u@other.test"}, "hi\n", "mxgate: <u@other.test>: recipient address rejected: Unrouteable address\nmxgate: no valid recipients: message not queued\n", 1},
		{"address trick", []string{"-bm", "u%other.test@example.test"}, "hi\n", "mxgate: <u%other.test@example.test>: recipient address rejected: Restricted characters in address\nmxgate: no valid recipients: message not queued\n", 1},
		{"invalid sender", []string{"-bm", "-f", "a@b@", "u@example.test"}, "hi\n", "mxgate: invalid sender \"a@b@\": bad address syntax: \"a@b@\": empty domain\n", 1},
		{"name without address in To:", []string{"-t"}, "To: John Doe\n\nhi\n", "mxgate: <John Doe>: recipient address rejected: malformed address: \"John Doe\": a name without <address>\nmxgate: no valid recipients: message not queued\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "maildir")
			cfg, dataDir := submitConfig(t, "maildir://"+root)
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"mxgate", "-config", cfg}, tt.args...), strings.NewReader(tt.input), &stdout, &stderr)
			if code != tt.code || stderr.String() != tt.want || stdout.Len() != 0 {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stderr %q", code, stdout.String(), stderr.String(), tt.code, tt.want)
			}
			if got := maildirFiles(t, root); len(got) != 0 {
				t.Errorf("delivered: %v", keys(got))
			}
			entries, _ := os.ReadDir(filepath.Join(dataDir, "spool", "input"))
			for _, e := range entries {
				if files, _ := os.ReadDir(filepath.Join(dataDir, "spool", "input", e.Name())); len(files) != 0 {
					t.Errorf("spool input/%s holds %d files", e.Name(), len(files))
				}
			}
		})
	}
}

func TestSubmitCommandQueueOnly(t *testing.T) {
	root := filepath.Join(t.TempDir(), "maildir")
	cfg, dataDir := submitConfig(t, "maildir://"+root)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"mxgate", "-config", cfg, "-bm", "-odq", "u@example.test"}, strings.NewReader("hi\n"), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if got := maildirFiles(t, root); len(got) != 0 {
		t.Errorf("-odq delivered: %v", keys(got))
	}
	mainlog, err := os.ReadFile(filepath.Join(dataDir, "log", "mainlog"))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSuffix(string(mainlog), "\n"), "\n"); len(lines) != 1 || !strings.Contains(lines[0], " <= ") {
		t.Errorf("mainlog after -odq:\n%s", mainlog)
	}
	// The queue runner delivers it.
	if code := run([]string{"mxgate", "-config", cfg, "-qf"}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("-qf exit %d, stderr %q", code, stderr.String())
	}
	if got := maildirFiles(t, root); len(got) != 1 || !strings.HasSuffix(got["example.test/u/new"], "\n\nhi\n") {
		t.Errorf("after -qf: %v", got)
	}
}

func TestSubmitCommandUsage(t *testing.T) {
	cfg, _ := gatewayConfig(t, "maildir:///nonexistent")
	for _, args := range [][]string{{"-bm", "-X"}, {"-t", "-f"}, {"-bm", "-F"}} {
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"mxgate", "-config", cfg}, args...), strings.NewReader("hi\n"), &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, stderr.String())
		}
	}
}

// One address that cannot be accepted does not refuse the message: it is
// delivered to the others, the bad one is a line on stderr and in the
// bounce the sender gets, and the exit status is 0 (Exim's with -oem).
func TestSubmitCommandPartial(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		input     string
		delivered []string // maildir directories of the message
		stderr    string
		bounceTo  string // maildir directory of the bounce; "" for none
		failed    []string
		queued    string // -bpc afterwards
	}{
		{
			name:      "-t",
			args:      []string{"-t", "-f", "robot@example.test"},
			input:     "To: joe@example.test, John Doe\nCc: u@other.test\n\nhi\n",
			delivered: []string{"example.test/joe/new"},
			stderr: "mxgate: <John Doe>: recipient address rejected: malformed address: \"John Doe\": a name without <address>\n" +
				"mxgate: <u@other.test>: recipient address rejected: Unrouteable address\n",
			bounceTo: "example.test/robot/new",
			failed:   []string{"John Doe", "u@other.test"},
		},
		{
			name:      "-bm",
			args:      []string{"-bm", "-f", "robot@example.test", "u@", "joe@example.test", "ann"},
			input:     "Subject: s\n\nhi\n",
			delivered: []string{"example.test/joe/new", "mx.example.test/ann/new"},
			stderr:    "mxgate: <u@>: recipient address rejected: malformed address: \"u@\": empty domain\n",
			bounceTo:  "example.test/robot/new",
			failed:    []string{"u@"},
		},
		{
			name:      "-odq leaves the message and its bounce to the queue runner",
			args:      []string{"-bm", "-odq", "-f", "robot@example.test", "joe@example.test", "u@other.test"},
			input:     "hi\n",
			stderr:    "mxgate: <u@other.test>: recipient address rejected: Unrouteable address\n",
			delivered: nil,
			queued:    "2\n",
		},
		{
			name:      "the null sender gets no bounce",
			args:      []string{"-bm", "-f", "", "joe@example.test", "u@other.test"},
			input:     "hi\n",
			delivered: []string{"example.test/joe/new"},
			stderr:    "mxgate: <u@other.test>: recipient address rejected: Unrouteable address\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "maildir")
			cfg, dataDir := submitConfig(t, "maildir://"+root)
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"mxgate", "-config", cfg}, tt.args...), strings.NewReader(tt.input), &stdout, &stderr)
			if code != 0 || stdout.Len() != 0 || stderr.String() != tt.stderr {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 0, stderr:\n%s", code, stdout.String(), stderr.String(), tt.stderr)
			}
			got := maildirFiles(t, root)
			want := len(tt.delivered)
			if tt.bounceTo != "" {
				want++
			}
			if len(got) != want {
				t.Errorf("delivered to %v, want %v and the bounce to %q", keys(got), tt.delivered, tt.bounceTo)
			}
			for _, d := range tt.delivered {
				if !strings.HasSuffix(got[d], "\n\nhi\n") {
					t.Errorf("%s holds %q", d, got[d])
				}
			}
			if tt.bounceTo != "" {
				b := got[tt.bounceTo]
				for _, want := range append([]string{"Return-Path: <>\n", "Subject: Mail delivery failed: returning message to sender\n"}, tt.failed...) {
					if !strings.Contains(b, want) {
						t.Errorf("bounce in %s lacks %q:\n%s", tt.bounceTo, want, b)
					}
				}
			}
			stdout.Reset()
			if tt.queued == "" {
				tt.queued = "0\n"
			}
			if run([]string{"mxgate", "-config", cfg, "-bpc"}, strings.NewReader(""), &stdout, &stderr); stdout.String() != tt.queued {
				t.Errorf("-bpc: %q, want %q", stdout.String(), tt.queued)
			}
			mainlog, err := os.ReadFile(filepath.Join(dataDir, "log", "mainlog"))
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(strings.TrimSpace(tt.stderr), "\n") {
				addr, why, _ := strings.Cut(strings.TrimPrefix(line, "mxgate: <"), ">: recipient address rejected: ")
				if !strings.Contains(string(mainlog), " ** "+addr+": "+why+"\n") {
					t.Errorf("mainlog lacks the ** line of %s:\n%s", addr, mainlog)
				}
			}
		})
	}
}

// Submission takes what the router routes: a [[route]]'s domain that is
// not a relay domain reaches its store; a foreign domain with outbound
// "none" is refused with the RCPT check's words, and -bt agrees.
func TestSubmitCommandRouted(t *testing.T) {
	dir := t.TempDir()
	store, partner := filepath.Join(dir, "store"), filepath.Join(dir, "partner")
	cfg, dataDir := routedConfig(t, `mode = "none"`,
		"[[route]]\nname    = \"partner\"\ndomains = [\"partner.test\"]\nurl     = \"maildir://"+partner+"\"\n",
		`url = "maildir://`+store+`"`)
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"mxgate", "-config", cfg, "-bm", "-f", "", "joe@example.test", "p@partner.test", "u@other.test"}, strings.NewReader("hi\n"), &stdout, &stderr)
	if want := "mxgate: <u@other.test>: recipient address rejected: Unrouteable address\n"; code != 0 || stdout.Len() != 0 || stderr.String() != want {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 0, stderr %q", code, stdout.String(), stderr.String(), want)
	}
	for root, d := range map[string]string{store: "example.test/joe/new", partner: "partner.test/p/new"} {
		if got := maildirFiles(t, root); len(got) != 1 || !strings.HasSuffix(got[d], "\n\nhi\n") {
			t.Errorf("%s holds %v, want the message in %s", root, keys(got), d)
		}
	}
	mainlog, err := os.ReadFile(filepath.Join(dataDir, "log", "mainlog"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{" ** u@other.test: Unrouteable address\n", " => p@partner.test R=partner T=maildir\n", " Completed\n"} {
		if !strings.Contains(string(mainlog), want) {
			t.Errorf("mainlog lacks %q:\n%s", want, mainlog)
		}
	}

	stdout.Reset()
	if code := run([]string{"mxgate", "-config", cfg, "-bt", "u@other.test"}, strings.NewReader(""), &stdout, &stderr); code != 2 ||
		!strings.HasPrefix(stdout.String(), "u@other.test is undeliverable: Unrouteable address") {
		t.Errorf("-bt: exit %d, %q; want 2, undeliverable", code, stdout.String())
	}
}

// TestSubmitThroughSocket: with the daemon's socket up, sendmail hands
// the message to the daemon's handler, which submits it as the caller
// the kernel names, and the client reproduces the daemon's stderr lines
// and exit status. A usage mistake sent straight to the socket is
// status 2.
func TestSubmitThroughSocket(t *testing.T) {
	root := filepath.Join(t.TempDir(), "maildir")
	cfgPath, dataDir := submitConfig(t, "maildir://"+root)
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	log, sp, bus, _, err := openLogsAndSpool(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	defer sp.Close()
	router, err := newRouter(cfg, log, bus)
	if err != nil {
		t.Fatal(err)
	}
	defer closeRouter(router, cfg)
	runner := newRunner(cfg, sp, log, router, bus)
	defer stop(runner, cfg)
	sock, err := localsubmit.Listen(localsubmit.Options{
		Path: submitSocket(cfg), Handler: submitHandler(func() (*config.Config, *route.Router) { return cfg, router }, sp, log, runner, bus),
		MaxMessage: 1 << 20, Timeout: 5 * time.Second, MaxConcurrent: 2, Log: func(s string) { t.Log(s) },
	})
	if err != nil {
		t.Fatal(err)
	}
	go sock.Serve()
	defer sock.Close()

	login, _ := invoker()
	var stdout, stderr bytes.Buffer
	code := run([]string{"mxgate", "-config", cfgPath, "-t"}, strings.NewReader("To: u@example.test, x@other.test\nSubject: s\n\nhi\n"), &stdout, &stderr)
	want := "mxgate: <x@other.test>: recipient address rejected: Unrouteable address\n"
	if code != 0 || stderr.String() != want || stdout.Len() != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 0 and %q", code, stdout.String(), stderr.String(), want)
	}
	stderr.Reset()
	code = run([]string{"mxgate", "-config", cfgPath, "-bm", "x@other.test"}, strings.NewReader("hi\n"), &stdout, &stderr)
	want = "mxgate: <x@other.test>: recipient address rejected: Unrouteable address\nmxgate: no valid recipients: message not queued\n"
	if code != 1 || stderr.String() != want {
		t.Errorf("exit %d, stderr %q; want exit 1 and %q", code, stderr.String(), want)
	}

	var direct bytes.Buffer
	status, err := localsubmit.Submit(context.Background(), submitSocket(cfg), []string{"-bm", "-X"}, strings.NewReader(""), &direct)
	if err != nil || status != 2 || !strings.Contains(direct.String(), `unknown option "-X"`) {
		t.Errorf("-X through the socket: status %d, err %v, stderr %q; want 2 and the unknown option", status, err, direct.String())
	}

	deadline := time.Now().Add(10 * time.Second)
	for maildirFiles(t, root)["example.test/u/new"] == "" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := maildirFiles(t, root); !strings.HasSuffix(got["example.test/u/new"], "\n\nhi\n") {
		t.Errorf("delivered: %v", keys(got))
	}
	mainlog, err := os.ReadFile(filepath.Join(dataDir, "log", "mainlog"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m) <= ` + regexp.QuoteMeta(login) + `@mx\.example\.test U=` + regexp.QuoteMeta(login) + ` P=local `).Match(mainlog) {
		t.Errorf("mainlog has no arrival from %s:\n%s", login, mainlog)
	}
}
