package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func init() {
	register("log reopen", "\tmake the running daemon reopen its log files (after log rotation)", logReopen)
}

// logReopen is logrotate's postrotate command: it sends SIGHUP to the
// daemon named by DATA_DIR/mxgate.pid, after checking that the PID still
// belongs to an `mxgate serve` (a stale pid file must never get another
// process signalled: SIGHUP ends most programs). It prints nothing on
// success, so cron has nothing to mail.
func logReopen(e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	cfg, err := loadConfig(e.configPath)
	if err != nil {
		return err
	}
	pidFile := pidPath(cfg)
	pid, err := daemonPID(pidFile)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("signalling the mxgate daemon (PID %d from %s): %w", pid, pidFile, err)
	}
	return nil
}

// daemonPID reads pidFile and returns its PID when that process is a
// running `mxgate serve`.
func daemonPID(pidFile string) (int, error) {
	b, err := os.ReadFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("no mxgate daemon is running (no %s)", pidFile)
	}
	if err != nil {
		return 0, fmt.Errorf("reading the daemon's pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s holds %q, not a process ID", pidFile, bytes.TrimSpace(b))
	}
	proc := filepath.Join("/proc", strconv.Itoa(pid))
	cmdline, err := os.ReadFile(filepath.Join(proc, "cmdline"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("no mxgate daemon is running: process %d from %s has exited (stale pid file)", pid, pidFile)
	}
	if err != nil {
		return 0, fmt.Errorf("checking process %d from %s: %w", pid, pidFile, err)
	}
	if !isMxgateServe(proc, cmdline) {
		return 0, fmt.Errorf("process %d from %s is not an mxgate daemon (stale pid file; %q runs there): not signalled",
			pid, pidFile, strings.Join(strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"), " "))
	}
	return pid, nil
}

// isMxgateServe reports whether the process at proc (/proc/PID) with
// NUL-separated cmdline runs `serve` of this program: its executable is
// ours, or its command name is mxgate (an upgrade may have replaced our
// executable since the daemon started).
func isMxgateServe(proc string, cmdline []byte) bool {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	serving := false
	for _, a := range args[1:] {
		if a == "serve" {
			serving = true
			break
		}
	}
	if !serving {
		return false
	}
	if comm, err := os.ReadFile(filepath.Join(proc, "comm")); err == nil && strings.TrimSpace(string(comm)) == "mxgate" {
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
