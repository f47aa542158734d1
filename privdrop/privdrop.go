// Package privdrop moves the process from root to an unprivileged user:
// the daemon once its listeners are bound, root's admin commands before
// they touch the spool, so that the spool, the logs and the databases
// only ever hold files of that user.
package privdrop

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// To switches every thread of the process to uid and gid, with groups as
// its supplementary groups (the user's own, as initgroups(3) gives a login:
// root's would otherwise stay; gid alone when groups is empty), and checks
// that it took and cannot be undone. Go's syscall applies each change to
// all threads on Linux.
func To(uid, gid int, groups []int) error {
	if len(groups) == 0 {
		groups = []int{gid}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups %v: %w", groups, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	if os.Getuid() != uid || os.Geteuid() != uid || os.Getgid() != gid || os.Getegid() != gid {
		return fmt.Errorf("switching to uid %d gid %d did not take: uid %d euid %d gid %d egid %d",
			uid, gid, os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid())
	}
	if uid != 0 && syscall.Setuid(0) == nil {
		return fmt.Errorf("switched to uid %d, and could switch back to root", uid)
	}
	return nil
}

// Own gives each of paths, and everything under the directories among
// them, to uid:gid. Only what has another owner is changed, so a large
// spool that is already right costs a walk; symbolic links are changed
// themselves, never followed. A path that does not exist is skipped.
func Own(uid, gid int, paths ...string) error {
	for _, root := range paths {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && path == root {
					return nil
				}
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			st, ok := info.Sys().(*syscall.Stat_t)
			if !ok || (int(st.Uid) == uid && int(st.Gid) == gid) {
				return nil
			}
			if err := os.Lchown(path, uid, gid); err != nil {
				return err
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("giving %s to uid %d gid %d: %w", root, uid, gid, err)
		}
	}
	return nil
}
