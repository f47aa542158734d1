package config

import (
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"
)

// checkConsole fills the web console's defaults in [admin] and checks its
// users file: it must be there and readable, by the daemon's user too
// (it is read again as it changes, after the privilege drop), and the
// password hashes in it should not be readable by everyone.
func (d *decoder) checkConsole(c *Config) {
	a := &c.Admin
	d.duration(keyPath{"admin", "session_timeout"}, &a.SessionTimeout, 8*time.Hour)
	if a.Users == "" || d.skipFiles {
		return
	}
	key := keyPath{"admin", "users"}
	if a.Listen == "" {
		d.warn(key, -1, "no console is served: admin.listen is not set")
	}
	f, err := os.Open(a.Users)
	if err != nil {
		d.failKey(key, -1, "%v", err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		d.failKey(key, -1, "%v", err)
		return
	}
	if fi.IsDir() {
		d.failKey(key, -1, "%s is a directory, not a users file", a.Users)
		return
	}
	if perm := fi.Mode().Perm(); perm&^0o640 != 0 {
		d.warn(key, -1, "%s has mode %s: it holds password hashes, make it 0640 or tighter", a.Users, fmt.Sprintf("%04o", perm))
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && c.UID > 0 && !readableBy(st, c.UID, c.Groups) {
		d.warn(key, -1, "%s (owner %d, group %d, mode %04o) is not readable by user %q: the daemon reads it again after dropping its privileges, and would keep the users it read at start (chgrp it to the daemon's group, mode 0640)",
			a.Users, st.Uid, st.Gid, fi.Mode().Perm(), c.User)
	}
}

// readableBy says whether a process of uid and groups may read the file
// of st, by the mode bits the kernel applies: the owner's when it is the
// owner, else the group's when in the group, else everyone's.
func readableBy(st *syscall.Stat_t, uid int, groups []int) bool {
	switch {
	case int(st.Uid) == uid:
		return st.Mode&0o400 != 0
	case slices.Contains(groups, int(st.Gid)):
		return st.Mode&0o040 != 0
	}
	return st.Mode&0o004 != 0
}
