package config

import (
	"fmt"
	"os"
	"time"
)

// checkConsole fills the web console's defaults in [admin] and checks its
// users file: it must be there and readable (the daemon reads it again as
// it changes), and the password hashes in it should not be readable by
// everyone.
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
}
