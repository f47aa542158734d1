package spool

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Space is what the spool's filesystem has free.
type Space struct {
	Bytes  uint64 // free to an unprivileged process (statfs f_bavail)
	Inodes uint64 // free inodes
	// NoInodeLimit is a filesystem that allocates inodes as it goes and
	// reports none (btrfs): its inode count is not checked.
	NoInodeLimit bool
}

// StatFS returns what the filesystem holding dir has free: statfs(2), the
// default of Options.StatFS.
func StatFS(dir string) (Space, error) {
	var st unix.Statfs_t
	for {
		err := unix.Statfs(dir, &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return Space{}, fmt.Errorf("statfs %s: %w", dir, err)
		}
		break
	}
	return Space{
		Bytes:        st.Bavail * uint64(st.Bsize),
		Inodes:       st.Ffree,
		NoInodeLimit: st.Files == 0,
	}, nil
}

// Shortage is a failed space check, Exim's check_spool_space: the spool
// cannot take a message of Size bytes and keep its reserve.
type Shortage struct {
	Space     Space
	Size      int64 // the message's declared size; 0 when unknown
	MinBytes  int64
	MinInodes int64
	Err       error // the filesystem could not be asked
}

// Error is Exim's log line for it, which admins grep for.
func (e *Shortage) Error() string {
	if e.Err != nil {
		return "spool directory space check failed: " + e.Err.Error()
	}
	return fmt.Sprintf("spool directory space = %dK inodes = %d check_space = %dK inodes = %d msg_size = %d",
		e.Space.Bytes/1024, e.Space.Inodes, e.MinBytes/1024, e.MinInodes, e.Size)
}

func (e *Shortage) Unwrap() error { return e.Err }

// spaceFresh is how long one statfs answer serves: a MAIL per
// millisecond then costs one system call a second, and a second's
// arrivals cannot eat a reserve meant for minutes of them.
const spaceFresh = time.Second

// spaceCache keeps the last statfs answer for spaceFresh.
type spaceCache struct {
	mu    sync.Mutex
	at    time.Time
	space Space
	err   error
}

// CheckSpace reports whether the spool can take a message of size bytes
// (its SIZE= declaration; 0 when unknown) and keep Options.MinFreeSpace
// and MinFreeInodes free: nil when it can, or when both are 0. Exim asks
// the same at MAIL, so that a full disk costs the client a 452 instead of
// a transfer ending in 451. A filesystem that cannot be asked is a
// shortage too: a spool whose state is unknown takes no mail, as in Exim.
func (s *Spool) CheckSpace(size int64) *Shortage {
	if s.minBytes <= 0 && s.minInodes <= 0 {
		return nil
	}
	c := &s.space
	c.mu.Lock()
	if now := time.Now(); c.at.IsZero() || now.Sub(c.at) >= spaceFresh || now.Before(c.at) {
		c.space, c.err = s.statfs(s.dir)
		c.at = now
	}
	space, err := c.space, c.err
	c.mu.Unlock()
	short := &Shortage{Space: space, Size: max(size, 0), MinBytes: s.minBytes, MinInodes: s.minInodes, Err: err}
	if err != nil {
		return short
	}
	if s.minBytes > 0 && (space.Bytes < uint64(s.minBytes) || space.Bytes-uint64(s.minBytes) < uint64(short.Size)) {
		return short
	}
	if s.minInodes > 0 && !space.NoInodeLimit && space.Inodes < uint64(s.minInodes) {
		return short
	}
	return nil
}
