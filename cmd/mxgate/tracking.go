package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"mxgate/config"
	"mxgate/tracking"
)

// openTracking opens [tracking] for serve: nil (which records nothing)
// when url = "none". The SQLite file and its -wal and -shm are made mode
// 0640 and, opened by root before the privilege drop, given to the
// daemon's user, as are the directories made for it.
func openTracking(ctx context.Context, cfg *config.Config, log tracking.Logger) (*tracking.Store, error) {
	if cfg.Tracking.URL == config.TrackingOff {
		return nil, nil
	}
	file := cfg.TrackingFile()
	if file != "" {
		dir := filepath.Dir(file)
		// The directories made here are the daemon's user's, as data_dir
		// is: the user opens the file again after the privilege drop,
		// and SQLite makes the -wal and -shm beside it whenever no
		// connection holds them (`mxgate track` with the daemon stopped).
		var made []string
		for d := dir; ; d = filepath.Dir(d) {
			if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) || d == filepath.Dir(d) {
				break
			}
			made = append(made, d)
		}
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("tracking: %w", err)
		}
		if os.Geteuid() == 0 && cfg.UID > 0 {
			for _, d := range made {
				if err := os.Lchown(d, cfg.UID, cfg.GID); err != nil {
					return nil, fmt.Errorf("tracking: giving %s to user %s: %w", d, cfg.User, err)
				}
			}
			// data_dir is given to the user whole before the drop
			// (dropPrivileges); a directory elsewhere must already be
			// the user's to write.
			if !insideDir(cfg.DataDir, dir) {
				if err := userCanWrite(dir, cfg.User, cfg.UID, append([]int{cfg.GID}, cfg.Groups...)); err != nil {
					return nil, fmt.Errorf("tracking: %w", err)
				}
			}
		}
	}
	s, err := tracking.Open(ctx, trackingOptions(cfg, log, false))
	if err != nil {
		return nil, err
	}
	if file == "" {
		return s, nil
	}
	for _, p := range []string{file, file + "-wal", file + "-shm"} {
		// Who wrote to whom is not for every local user; SQLite gives
		// the -wal and -shm it makes later the file's mode.
		err := os.Chmod(p, 0o640)
		if err == nil && os.Geteuid() == 0 && cfg.UID > 0 {
			err = os.Lchown(p, cfg.UID, cfg.GID)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.Close()
			return nil, fmt.Errorf("tracking: giving %s to user %s: %w", p, cfg.User, err)
		}
	}
	return s, nil
}

// insideDir reports whether path is root or below it.
func insideDir(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && filepath.IsLocal(rel) || rel == "."
}

func trackingOptions(cfg *config.Config, log tracking.Logger, readOnly bool) tracking.Options {
	return tracking.Options{
		URL:       cfg.Tracking.URL,
		Retention: time.Duration(cfg.Tracking.Retention),
		Node:      cfg.Hostname,
		Log:       log,
		Queue:     cfg.Tracking.Queue,
		ReadOnly:  readOnly,
	}
}

// userCanWrite refuses a SQLite directory the daemon's user (uid, in
// groups) cannot reach or create files in: root opens the database
// before the privilege drop, but SQLite makes the -wal and -shm again as
// the user whenever no connection holds them, and would fail then, long
// after the start. It reads the mode bits as the kernel does (owner,
// else group, else other); ACLs are not read.
func userCanWrite(dir, name string, uid int, groups []int) error {
	const search, write uint32 = 0o1, 0o2
	for d, want := dir, search|write; ; d, want = filepath.Dir(d), search {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		perm := uint32(fi.Mode().Perm())
		switch {
		case int(st.Uid) == uid:
			perm >>= 6
		case slices.Contains(groups, int(st.Gid)):
			perm >>= 3
		}
		if perm&want != want {
			if d == dir {
				return fmt.Errorf("directory %s is not writable by user %s (uid %d), as whom SQLite creates the database's -wal and -shm files there: give the user the directory or its group write access", dir, name, uid)
			}
			return fmt.Errorf("directory %s is out of reach of user %s (uid %d): %s is not searchable (x) by the user", dir, name, uid, d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}
