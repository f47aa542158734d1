package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The committed man page and completion script are what the commands
// generate now.
func TestGeneratedDocsAreFresh(t *testing.T) {
	for _, d := range []struct{ file, cmd, got string }{
		{"mxgate.8", "man", manPage()},
		{"mxgate.bash-completion", "completion bash", bashCompletion()},
	} {
		path := filepath.Join("..", "..", "doc", d.file)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != d.got {
			t.Errorf("doc/%s is stale: run go run ./cmd/mxgate %s > doc/%s", d.file, d.cmd, d.file)
		}
	}
}

// The man page renders without a warning from groff, with every section
// the manual needs.
func TestManPageRenders(t *testing.T) {
	if _, err := exec.LookPath("groff"); err != nil {
		t.Fatal("groff is not installed: run scripts/install-test-deps.sh (as root) first")
	}
	cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = strings.NewReader(manPage())
	var errs bytes.Buffer
	cmd.Stderr = &errs
	if err := cmd.Run(); err != nil || errs.Len() > 0 {
		t.Errorf("groff -man -ww: %v\n%s", err, errs.String())
	}
	cmd = exec.Command("groff", "-man", "-Tascii", "-P-cbou", "-rLL=200n")
	cmd.Stdin = strings.NewReader(manPage())
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	for _, want := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIM COMPATIBILITY", "FILES", "SIGNALS", "EXIT STATUS", "ENVIRONMENT", "SEE ALSO",
		"-Mg ID...", "Give up: fail every undelivered recipient", "serve [-v]", "-v     also print the version", "mxgate -qR @example.com"} {
		if !strings.Contains(text, want) {
			t.Errorf("the rendered man page has no %q", want)
		}
	}
}

// The completion script, sourced in bash, completes commands, second
// words, flags, and the queue's IDs from the real binary on the
// command line's config.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "mxgate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	q := newQueueTest(t)
	ids := q.fill(
		message{sender: "a@example.test", rcpts: []string{"b@example.test"}, body: "one\n"},
		message{sender: "a@example.test", rcpts: []string{"c@example.test"}, body: "two\n"},
	)
	script := filepath.Join("..", "..", "doc", "mxgate.bash-completion")
	tests := []struct {
		words []string // the command line
		cword int      // the word being completed; 0: the last
		want  string   // COMPREPLY, one a line
	}{
		{[]string{bin, "ser"}, 0, "serve\n"},
		{[]string{bin, "-config", q.cfg, "quarantine", "re"}, 0, "release\n"},
		{[]string{bin, "config", ""}, 0, "check\n"},
		{[]string{bin, "serve", "-"}, 0, "-v\n--help\n"},
		{[]string{bin, "-config", q.cfg, "-Mg", ""}, 0, ids[0] + "\n" + ids[1] + "\n"},
		{[]string{bin, "-Mrm", ids[1][:3], "-config", q.cfg}, 2, ""}, // the config comes after: not used
		{[]string{bin, "-config", q.cfg, "-bP", "relay.d"}, 0, "relay.domains\n"},
		{[]string{bin, "-config", q.cfg, "-Mar", ids[0]}, 0, ids[0] + "\n"},
		{[]string{bin, "-config", q.cfg, "-Mar", ids[0], ""}, 0, ""}, // then addresses
		{[]string{bin, "-config", q.cfg, "-Mvh", ids[0], ""}, 0, ""},
		{[]string{bin, "help", "-Mv"}, 0, "-Mvb\n-Mvh\n-Mvl\n"},
		{[]string{bin, "-bp"}, 0, "-bp\n-bpa\n-bpc\n-bpi\n-bpr\n-bpru\n-bpu\n"},
	}
	for _, tt := range tests {
		// COMP_WORDS as bash fills it for "mxgate ... WORD<TAB>".
		cword := tt.cword
		if cword == 0 {
			cword = len(tt.words) - 1
		}
		var quoted []string
		for _, w := range tt.words {
			quoted = append(quoted, "'"+w+"'")
		}
		prog := `source "$1" || exit 1
complete -p mxgate
COMP_WORDS=(` + strings.Join(quoted, " ") + `)
COMP_CWORD=` + strconv.Itoa(cword) + `
_mxgate
printf '%s\n' "${COMPREPLY[@]}"
`
		out, err := exec.Command(bash, "--norc", "--noprofile", "-c", prog, "bash", script).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", tt.words, err, out)
		}
		got := strings.TrimPrefix(string(out), "complete -F _mxgate mxgate\n")
		if got == "\n" {
			got = ""
		}
		if got != tt.want {
			t.Errorf("completing %q:\n%s\nwant:\n%s", tt.words[1:], got, tt.want)
		}
	}
}
