package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoSpoolHere: an admin command on the embedded default in a
// directory without ./var says so and creates nothing.
func TestNoSpoolHere(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("MXGATE_CONFIG", "")
	for _, argv := range [][]string{{"mxgate", "-bpc"}, {"mxgate", "-bp"}, {"mxgate", "-q"}, {"mxgate", "quarantine", "list"}} {
		var stdout, stderr bytes.Buffer
		code := run(argv, strings.NewReader(""), &stdout, &stderr)
		want := `mxgate: there is no spool here: the embedded default's data_dir "var" does not exist in the working directory ` + dir +
			"; give the gateway's config with -config FILE (or $MXGATE_CONFIG)\n"
		if code != 1 || stdout.Len() != 0 || stderr.String() != want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 1 and %q", argv[1:], code, stdout.String(), stderr.String(), want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the commands created %v in the working directory", entries)
	}
}

// TestNoSpoolAtDataDir: the same for a config file's data_dir.
func TestNoSpoolAtDataDir(t *testing.T) {
	cfg, dataDir := gatewayConfig(t, "smtp://127.0.0.1:2600")
	var stdout, stderr bytes.Buffer
	code := run([]string{"mxgate", "-config", cfg, "-bpc"}, strings.NewReader(""), &stdout, &stderr)
	want := "mxgate: there is no spool at " + dataDir + " (data_dir of " + cfg + "): the directory does not exist; `mxgate serve` creates it\n"
	if code != 1 || stderr.String() != want {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), want)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("-bpc created %s", dataDir)
	}
}

// TestServeRefusesRoot: root without user or run_as_root is refused
// before anything is created.
func TestServeRefusesRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the refusal is root's")
	}
	cfg, dataDir := gatewayConfig(t, "smtp://127.0.0.1:2600")
	var stdout, stderr bytes.Buffer
	code := run([]string{"mxgate", "-config", cfg, "serve"}, strings.NewReader(""), &stdout, &stderr)
	want := `mxgate: refusing to run as root: set user = "mxgate" (or run_as_root = true) in ` + cfg + "\n"
	if code != 1 || stderr.String() != want {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), want)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("the refused serve created %s", dataDir)
	}
}

// TestSystemConfig: a binary built with systemConfig reads that file
// when no -config and no $MXGATE_CONFIG say otherwise, says so (-bV, the
// usage), and fails when it is missing.
func TestSystemConfig(t *testing.T) {
	cfg, _ := gatewayConfig(t, "smtp://127.0.0.1:2600")
	t.Setenv("MXGATE_CONFIG", "")
	saved := systemConfig
	t.Cleanup(func() { systemConfig = saved })

	systemConfig = cfg
	var stdout, stderr bytes.Buffer
	for _, tt := range []struct {
		argv []string
		want string // in stdout
	}{
		{[]string{"mxgate", "config", "check"}, "# mxgate configuration (from " + cfg + "): OK\n"},
		{[]string{"mxgate", "-bV"}, "\nConfiguration file is " + cfg + "\n# mxgate configuration (from " + cfg + "): OK\n"},
		{[]string{"mxgate", "--help"}, "$MXGATE_CONFIG is used, and\nwithout that " + cfg + ".\n"},
	} {
		stdout.Reset()
		stderr.Reset()
		if code := run(tt.argv, strings.NewReader(""), &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), tt.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 0 and %q", tt.argv[1:], code, stdout.String(), stderr.String(), tt.want)
		}
	}

	systemConfig = filepath.Join(t.TempDir(), "absent.toml")
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"mxgate", "config", "check"}, strings.NewReader(""), &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), systemConfig+": no such file or directory") {
		t.Errorf("exit %d, stderr %q; want 1 naming %s", code, stderr.String(), systemConfig)
	}
}
