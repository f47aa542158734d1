package main

import (
	"fmt"
	"syscall"

	"mxgate/pidfile"
)

func init() {
	register("log reopen", "\tmake the running daemon reopen its log files (after log rotation; SIGUSR1, no config read)", logReopen)
}

// logReopen is logrotate's postrotate command: it sends SIGUSR1 to the
// daemon named by DATA_DIR/mxgate.pid, after checking that the PID still
// belongs to an `mxgate serve` (a stale pid file must never get another
// process signalled: SIGUSR1 ends most programs). The daemon only reopens
// its logs: no config is read (SIGHUP, `mxgate reload`, does that too).
// It prints nothing on success, so cron has nothing to mail.
func logReopen(e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	cfg, err := loadConfig(e.configPath)
	if err != nil {
		return err
	}
	pidFile := pidPath(cfg)
	pid, err := pidfile.Daemon(pidFile, "mxgate", "serve")
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return fmt.Errorf("signalling the mxgate daemon (PID %d from %s): %w", pid, pidFile, err)
	}
	return nil
}
