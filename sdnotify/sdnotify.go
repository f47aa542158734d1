// Package sdnotify tells systemd what the daemon is doing, as sd_notify(3)
// does: one datagram of "KEY=VALUE" lines to the socket $NOTIFY_SOCKET
// names. A unit of Type=notify counts as started only after READY=1, so
// `systemctl start` returns once mail is accepted, not once the process
// exists. Outside systemd the variable is unset and every call does
// nothing.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Socket is the environment variable systemd sets for a Type=notify
// service: a path, or an abstract socket name written with a leading '@'.
const Socket = "NOTIFY_SOCKET"

// Send sends the states as one datagram, one per line ("READY=1",
// "STATUS=..."); nothing when $NOTIFY_SOCKET is unset.
func Send(states ...string) error {
	name := os.Getenv(Socket)
	if name == "" {
		return nil
	}
	// The sockaddr of an abstract name starts with a NUL byte, which no
	// environment variable can hold: systemd writes it as '@'.
	addr := &net.UnixAddr{Name: name, Net: "unixgram"}
	if strings.HasPrefix(name, "@") {
		addr.Name = "\x00" + name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return fmt.Errorf("sd_notify to %s=%s: %w", Socket, name, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(states, "\n"))); err != nil {
		return fmt.Errorf("sd_notify to %s=%s: %w", Socket, name, err)
	}
	return nil
}

// Ready says the daemon serves: at start once its listeners accept, and at
// the end of a reload. MAINPID names this process, so systemd watches the
// right one even when a wrapper started it.
func Ready(status string) error {
	return Send("READY=1", fmt.Sprintf("MAINPID=%d", os.Getpid()), "STATUS="+status)
}

// Reloading says a reload has begun; Ready ends it. systemd takes the
// CLOCK_MONOTONIC time to tell this reload from an earlier one.
func Reloading() error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("sd_notify: reading CLOCK_MONOTONIC: %w", err)
	}
	return Send("RELOADING=1", fmt.Sprintf("MONOTONIC_USEC=%d", ts.Nano()/1000))
}

// Stopping says the daemon is shutting down: draining sessions and
// deliveries, with status saying for how long at most.
func Stopping(status string) error {
	return Send("STOPPING=1", "STATUS="+status)
}

// Status is a free-form line that `systemctl status` shows.
func Status(status string) error {
	return Send("STATUS=" + status)
}
