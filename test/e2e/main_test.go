package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binary is the mxgate executable TestMain builds for every test.
var binary string

// repoRoot is the module root; scripts and testdata are found from it.
var repoRoot string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	repoRoot = root
	dir, err := os.MkdirTemp("", "mxgate-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "mxgate")
	build := exec.Command("go", "build", "-o", binary, "./cmd/mxgate")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/mxgate: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// requirePrograms fails the test (never skips it: CI installs the peers)
// when a peer program is not installed.
func requirePrograms(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			// Debian installs the daemons in /usr/sbin, which a non-root
			// PATH may lack.
			if _, serr := os.Stat(filepath.Join("/usr/sbin", name)); serr == nil {
				continue
			}
			t.Fatalf("%s is not installed: run scripts/install-test-deps.sh (as root) first", name)
		}
	}
}

// testdata returns the path of a file under testdata/e2e.
func testdata(name string) string {
	return filepath.Join(repoRoot, "testdata", "e2e", name)
}

// enterableTempDir is a new directory for the test, mode 0755 and removed
// when it ends, that other users may enter: a daemon that drops its
// privileges, or a command run as nobody. t.TempDir's is below one
// private to this user.
func enterableTempDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mxgate-e2e-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
