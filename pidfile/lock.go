package pidfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockName is the file in data_dir whose lock makes one daemon its only
// user.
const LockName = "mxgate.lock"

// Lock is a daemon's exclusive hold on its data_dir: an flock on
// DATA_DIR/mxgate.lock, which the kernel drops when the process ends,
// however it ends, so a crash never leaves a stale lock.
type Lock struct{ f *os.File }

// LockedError says which daemon holds the lock.
type LockedError struct {
	Dir string
	PID int // 0 when the holder has not written it yet
}

func (e *LockedError) Error() string {
	pid := "pid unknown"
	if e.PID > 0 {
		pid = "pid " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("another mxgate daemon (%s) is using data_dir %s", pid, e.Dir)
}

// Acquire takes the lock of dataDir without waiting: a *LockedError when
// another process holds it, which this call leaves untouched. The holder
// writes its PID into the file, for that error.
func Acquire(dataDir string) (*Lock, error) {
	path := filepath.Join(dataDir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the daemon lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := os.ReadFile(path)
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			return nil, &LockedError{Dir: dataDir, PID: pid}
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.WriteAt(fmt.Appendf(nil, "%d\n", os.Getpid()), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Release lets another daemon have the data_dir. The file stays: removing
// it would let a second daemon lock a new file while a third still holds
// the old one.
func (l *Lock) Release() error { return l.f.Close() }
