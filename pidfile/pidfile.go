// Package pidfile owns the daemon's identity files: the lock on data_dir
// that makes it the only daemon there (Acquire), and its pid file:
// writing it at start-up and, for the commands that signal the daemon
// (`mxgate log reopen`), reading it back and making sure the PID still
// belongs to the daemon, by way of /proc, so that a stale file never gets
// another process signalled.
package pidfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// procRoot is where the process table is; tests point it at a fake one.
var procRoot = "/proc"

// Write records the calling process's PID in path ("PID\n", mode 0644).
// The caller removes the file (Remove) when it exits.
func Write(path string) error {
	if err := os.WriteFile(path, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
		return fmt.Errorf("writing pid file: %w", err)
	}
	return nil
}

// Remove deletes the pid file; one already gone is no error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Daemon reads path and returns the PID it holds when that process is a
// running daemon of this program: its command line has the argument arg
// ("serve"), and its executable is ours or its command name is name
// ("mxgate": an upgrade may have replaced our executable since the daemon
// started). The errors say, in an administrator's words, why there is
// nothing to signal: no pid file, a stale one, or a PID that another
// program now has.
func Daemon(path, name, arg string) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("no %s daemon is running (no %s)", name, path)
	}
	if err != nil {
		return 0, fmt.Errorf("reading the daemon's pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s holds %q, not a process ID", path, bytes.TrimSpace(b))
	}
	proc := filepath.Join(procRoot, strconv.Itoa(pid))
	cmdline, err := os.ReadFile(filepath.Join(proc, "cmdline"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("no %s daemon is running: process %d from %s has exited (stale pid file)", name, pid, path)
	}
	if err != nil {
		return 0, fmt.Errorf("checking process %d from %s: %w", pid, path, err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if !isDaemon(proc, args, name, arg) {
		return 0, fmt.Errorf("process %d from %s is not an %s daemon (stale pid file; %q runs there): not signalled",
			pid, path, name, strings.Join(args, " "))
	}
	return pid, nil
}

// isDaemon reports whether the process at proc (/proc/PID) with command
// line args runs this program with arg.
func isDaemon(proc string, args []string, name, arg string) bool {
	if len(args) < 2 || !slices.Contains(args[1:], arg) {
		return false
	}
	if comm, err := os.ReadFile(filepath.Join(proc, "comm")); err == nil && strings.TrimSpace(string(comm)) == name {
		return true
	}
	self, err := os.Executable()
	if err != nil {
		return false
	}
	selfInfo, err := os.Stat(self)
	if err != nil {
		return false
	}
	exeInfo, err := os.Stat(filepath.Join(proc, "exe"))
	return err == nil && os.SameFile(selfInfo, exeInfo)
}
