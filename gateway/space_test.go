package gateway

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"mxgate/config"
)

// TestSpoolSpace runs the gateway on a real 2 MiB filesystem (a tmpfs,
// as root) with a 1 MiB and 50-inode reserve: MAIL is answered 452 4.3.1
// at once when the declared SIZE, a filled disk or used-up inodes would
// eat the reserve, and accepted again once there is room.
func TestSpoolSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	var spoolDir string
	ts := newTestServer(t, func(c *config.Config) {
		spoolDir = filepath.Join(c.DataDir, "spool")
		if err := os.MkdirAll(spoolDir, 0o750); err != nil {
			t.Fatal(err)
		}
		// The spool's 190 directories leave about 110 of the 300 inodes.
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m,nr_inodes=300", "tmpfs", spoolDir).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
		}
		// Registered before the server's: runs after it has closed the spool.
		t.Cleanup(func() {
			if out, err := exec.Command("umount", spoolDir).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", spoolDir, err, out)
			}
		})
		c.Spool.MinFreeSpace = 1 << 20
		c.Spool.MinFreeInodes = 50
	})
	c := dial(t, ts.addr(0))
	c.greet()
	// A statfs answer serves a second: each change waits it out.
	fresh := func() { time.Sleep(1100 * time.Millisecond) }
	mail := func(param, want string) {
		t.Helper()
		c.expect("MAIL FROM:<a@client.test>"+param, want)
		if strings.HasPrefix(want, "250") {
			c.expect("RSET", "250")
		}
	}

	mail(" SIZE=500000", "250 2.1.0")
	mail(" SIZE=1500000", "452 4.3.1 Insufficient system storage")
	mail("", "250 2.1.0")
	// A message accepted whole still fits.
	if got := c.sendMessage("a@client.test", []string{"u@example.test"}, "Subject: fits\n\nhi\n"); !strings.HasPrefix(got, "250 2.0.0 OK id=") {
		t.Fatalf("message: %q", got)
	}

	fill := filepath.Join(spoolDir, "fill")
	if err := os.WriteFile(fill, make([]byte, 1200<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh()
	mail("", "452 4.3.1 Insufficient system storage")
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	fresh()
	mail("", "250 2.1.0")

	var files []string
	for i := 0; ; i++ {
		var st unix.Statfs_t
		if err := unix.Statfs(spoolDir, &st); err != nil {
			t.Fatal(err)
		}
		if st.Ffree < 50 {
			break
		}
		f := filepath.Join(spoolDir, fmt.Sprintf("inode%d", i))
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	fresh()
	mail(" SIZE=10", "452 4.3.1 Insufficient system storage")
	for _, f := range files {
		os.Remove(f)
	}
	fresh()
	mail(" SIZE=10", "250 2.1.0")
	c.expect("QUIT", "221")

	rej := ts.logFile("rejectlog")
	for _, want := range []string{
		"H=(client.test) [127.0.0.1] temporarily rejected MAIL <a@client.test>: spool directory space = ",
		" check_space = 1024K inodes = 50 msg_size = 1500000\n",
		" check_space = 1024K inodes = 50 msg_size = 0\n",
		" check_space = 1024K inodes = 50 msg_size = 10\n",
	} {
		if !strings.Contains(rej, want) {
			t.Errorf("rejectlog lacks %q:\n%s", want, rej)
		}
	}
	if n := strings.Count(rej, "temporarily rejected MAIL"); n != 3 {
		t.Errorf("%d MAIL refusals in the rejectlog, want 3:\n%s", n, rej)
	}
}
