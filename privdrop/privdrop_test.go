package privdrop

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// childEnv makes the test binary the child of TestTo: it switches and
// reports what /proc says of every one of its threads.
const childEnv = "PRIVDROP_TEST_CHILD"

const nobody = 65534

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

// child starts threads of its own first, so the switch has more than one
// to reach, then switches to nobody and prints each thread's Uid, Gid and
// Groups lines of /proc/self/task/TID/status.
func child() int {
	ready := make(chan struct{})
	for range 4 {
		go func() {
			runtime.LockOSThread()
			ready <- struct{}{}
			select {}
		}()
		<-ready
	}
	if err := To(nobody, nobody, []int{nobody, 4}); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	for _, st := range tasks {
		f, err := os.Open(st)
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "Uid:") || strings.HasPrefix(l, "Gid:") || strings.HasPrefix(l, "Groups:") {
				fmt.Println(strings.Join(strings.Fields(l), " "))
			}
		}
		f.Close()
	}
	return 0
}

// TestTo runs a child as root that switches to nobody with the groups
// nobody and adm (4), and checks in /proc that every thread of it has
// nobody's real, effective, saved and file-system IDs and no other groups.
func TestTo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := map[string]bool{
		"Uid: 65534 65534 65534 65534": true,
		"Gid: 65534 65534 65534 65534": true,
		"Groups: 4 65534":              true,
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 3*5 {
		t.Errorf("child reported %d lines, want 3 for each of at least 5 threads:\n%s", len(lines), out)
	}
	for _, l := range lines {
		if !want[l] {
			t.Errorf("a thread of the child has %q after To(%d, %d, [%d 4])", l, nobody, nobody, nobody)
		}
	}
}

// TestOwn gives a tree to nobody: what belonged to root changes, a
// symbolic link is changed itself and not followed, a missing path is
// skipped.
func TestOwn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving files away needs root")
	}
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "outside")
	for _, f := range []string{"spool/input/a-H", "log/mainlog"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(outside, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := Own(nobody, nobody, dir, filepath.Join(dir, "absent")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"", "spool", "spool/input", "spool/input/a-H", "log", "log/mainlog", "link"} {
		if uid, gid := owner(t, filepath.Join(dir, p)); uid != nobody || gid != nobody {
			t.Errorf("%s is owned by %d:%d, want %d:%d", p, uid, gid, nobody, nobody)
		}
	}
	if uid, _ := owner(t, outside); uid != 0 {
		t.Errorf("the link's target was given away too: owner %d", uid)
	}
}

func owner(t *testing.T, path string) (uid, gid int) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return int(st.Uid), int(st.Gid)
}
