package pidfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestLock: a second Acquire on a locked data_dir fails naming the
// holder's PID and the directory, and leaves the holder's file as it was;
// after Release the data_dir can be locked again.
func TestLock(t *testing.T) {
	dir := t.TempDir()
	first, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, LockName)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d\n", os.Getpid()); string(before) != want {
		t.Errorf("lock file holds %q, want %q", before, want)
	}

	_, err = Acquire(dir)
	var locked *LockedError
	if !errors.As(err, &locked) {
		t.Fatalf("second Acquire: %v, want a *LockedError", err)
	}
	if want := fmt.Sprintf("another mxgate daemon (pid %d) is using data_dir %s", os.Getpid(), dir); err.Error() != want {
		t.Errorf("second Acquire: %q, want %q", err, want)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Errorf("the second Acquire changed the lock file: %q, was %q", after, before)
	}

	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	again.Release()
}

func TestLockMissingDir(t *testing.T) {
	if _, err := Acquire(filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Fatal("Acquire in a missing directory succeeded")
	}
}
