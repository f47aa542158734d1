package deliver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultLayout is where a recipient's Maildir is under the root unless
// the route says otherwise: Dovecot's maildir:DIR/%d/%n.
const DefaultLayout = "{domain}/{local}"

// MaildirOptions say where and how a maildir:// store writes. They are
// taken as given: package config checks and fills them.
type MaildirOptions struct {
	Root string // the maildir:// path; a relative Layout is below it
	// Layout is the Maildir of a recipient: {domain}, {local} and {user}
	// (the owner of the domain in Users); an absolute layout ignores Root.
	Layout string
	// Users is a file of "domain: user" lines (cPanel's /etc/userdomains),
	// read again whenever it changes; "" when the layout has no {user}.
	Users string
	// Delimiter separates a sub-address: the local part is cut at the
	// first of its characters (user+tag is user); "" cuts nothing.
	Delimiter string
	Lowercase bool // local parts lower-cased, as Dovecot's %Lu
	UID, GID  int  // owner of what is created; -1 leaves it the process's
	// OwnerUser gives what is created below the layout's fixed part to
	// the system user {user} names and their primary group, looked up
	// per delivery (cPanel's Dovecot reads each account's mail as that
	// account); UID and GID then own only the fixed part.
	OwnerUser bool
	Mode      os.FileMode // of the directories created; files get it without x bits
}

// Maildir delivers recipient local@domain into the Maildir its layout
// names. It is the maildir:// Transport, and its Dir is what -bt shows.
type Maildir struct {
	o      MaildirOptions
	users  *userMap
	owners owners
	host   string // hostname as the Maildir unique-name spec escapes it
	pid    int
	// The layout split once: base is its fixed part (see place), segs
	// the segments from the first with a field on, still with fields.
	base string
	segs []string
}

// deliveries is the Q part of the unique name: unique within the process
// even when two deliveries share the same microsecond.
var deliveries atomic.Uint64

// NewMaildir returns the Maildir transport of o. Nothing is read yet: the
// users file is read at the first recipient that needs it.
func NewMaildir(o MaildirOptions) *Maildir {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	// The spec's escapes: "/" and ":" must not appear in a file name (":"
	// starts the info part of names in cur/).
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	md := &Maildir{o: o, host: host, pid: os.Getpid(), base: o.Root}
	if o.Users != "" {
		md.users = &userMap{path: o.Users}
	}
	if filepath.IsAbs(o.Layout) {
		md.base = "/"
	}
	for seg := range strings.SplitSeq(strings.Trim(o.Layout, "/"), "/") {
		if md.segs == nil && !layoutField.MatchString(seg) {
			md.base = filepath.Join(md.base, seg)
			continue
		}
		md.segs = append(md.segs, seg)
	}
	md.base = filepath.Clean(md.base)
	return md
}

// Name is the transport's name, logged as T=.
func (md *Maildir) Name() string { return "maildir" }

// Deliver writes one file per recipient. Problems with a recipient's address,
// and a symlink on the way to its Maildir, fail it; I/O errors (a full disk,
// permissions) and a {user} owner the system does not know defer it, since
// an admin can fix them.
func (md *Maildir) Deliver(ctx context.Context, m *Message) []Result {
	if err := checkAddr(m.Sender); err != nil {
		return results(m, "", Failed, BadAddress, "sender "+err.Error())
	}
	rs := results(m, "", Deferred, NoReason, "")
	for i, rcpt := range m.Recipients {
		if ctx.Err() != nil {
			rs[i].Reason, rs[i].Err = Abandoned, "delivery abandoned: "+context.Cause(ctx).Error()
			continue
		}
		pl, err := md.place(rcpt)
		if err != nil {
			if DirTemporary(err) {
				rs[i].Reason, rs[i].Err = LocalError, err.Error()
				continue
			}
			why := BadAddress
			if errors.As(err, new(unsafePathError)) {
				why = MaildirUnsafePath
			}
			rs[i].Status, rs[i].Reason, rs[i].Err = Failed, why, err.Error()
			continue
		}
		own := owner{md.o.UID, md.o.GID}
		if md.o.OwnerUser {
			if own, err = md.owners.lookup(pl.user); err != nil {
				rs[i].Reason, rs[i].Err = LocalError, err.Error()
				continue
			}
		}
		if err := md.deliverOne(ctx, pl, own, m, rcpt); err != nil {
			rs[i].Reason, rs[i].Err = LocalError, err.Error()
			switch {
			case ctx.Err() != nil:
				rs[i].Reason = Abandoned
			case errors.As(err, new(unsafePathError)):
				rs[i].Status, rs[i].Reason = Failed, MaildirUnsafePath
			}
			continue
		}
		rs[i].Status = Delivered
	}
	return rs
}

// Dir is the Maildir rcpt is delivered into, or why rcpt cannot have one.
// Every field becomes a path element, so anything that could leave the
// layout or hide the directory is refused.
func (md *Maildir) Dir(rcpt string) (string, error) {
	pl, err := md.place(rcpt)
	if err != nil {
		return "", err
	}
	return filepath.Join(append([]string{pl.base}, pl.elems...)...), nil
}

// place is where a recipient's Maildir is, in two parts. base is the
// layout's fixed part (the root and the segments before the first field),
// the admin's, so it is used as it is, symlinks and all. elems are the
// rest, from the first segment with a field on: they may be in a user's
// home, where the user can plant a symlink, so they are walked one by one
// without following any.
type place struct {
	base  string
	elems []string
	user  string // {user} filled in; "" when the layout has none
}

func (md *Maildir) place(rcpt string) (place, error) {
	if err := checkAddr(rcpt); err != nil {
		return place{}, err
	}
	local, domain, ok := splitAddr(rcpt)
	if !ok {
		return place{}, fmt.Errorf("address %q has no domain: cannot choose a Maildir", rcpt)
	}
	domain = strings.ToLower(domain)
	if err := safeElement(domain); err != nil {
		return place{}, unsafePathError{fmt.Errorf("address %q: domain %w", rcpt, err)}
	}
	local = md.mailbox(plainLocal(local))
	if err := safeElement(local); err != nil {
		return place{}, unsafePathError{fmt.Errorf("address %q: local part %w", rcpt, err)}
	}
	var pl place
	fields := map[string]string{"{domain}": domain, "{local}": local}
	if strings.Contains(md.o.Layout, "{user}") {
		name, err := md.users.lookup(domain)
		if err != nil {
			return place{}, err
		}
		if err := safeElement(name); err != nil {
			return place{}, unsafePathError{fmt.Errorf("address %q: the user of %s in maildir_users %w", rcpt, domain, err)}
		}
		fields["{user}"], pl.user = name, name
	}
	pl.base = md.base
	for _, seg := range md.segs {
		pl.elems = append(pl.elems, layoutField.ReplaceAllStringFunc(seg, func(f string) string { return fields[f] }))
	}
	return pl, nil
}

// layoutField is a {field} of a layout; config allows only the three Dir
// fills in.
var layoutField = regexp.MustCompile(`\{[a-z]+\}`)

// mailbox is the local part as the store names its mailbox: the
// sub-address cut off, lower-cased when configured. A local part that
// starts with the delimiter is kept whole, as Postfix does.
func (md *Maildir) mailbox(local string) string {
	if md.o.Delimiter != "" {
		if i := strings.IndexAny(local, md.o.Delimiter); i > 0 {
			local = local[:i]
		}
	}
	if md.o.Lowercase {
		local = strings.ToLower(local)
	}
	return local
}

// unsafePathError marks an address part that cannot be a Maildir path
// element (the MaildirUnsafePath reason).
type unsafePathError struct{ error }

func (e unsafePathError) Unwrap() error { return e.error }

// layoutError is a recipient the layout cannot place: its domain has no
// user (permanent), or the users file cannot be read (temporary: an admin
// fixes it).
type layoutError struct {
	msg       string
	temporary bool
}

func (e *layoutError) Error() string { return e.msg }

func safeElement(s string) error {
	switch {
	case s == "":
		return errors.New("is empty: unsafe as a Maildir path")
	case s[0] == '.':
		return fmt.Errorf("%q starts with a dot: unsafe as a Maildir path", s)
	case strings.ContainsAny(s, "/\x00"):
		return fmt.Errorf("%q contains a slash or NUL: unsafe as a Maildir path", s)
	case len(s) > 255:
		return fmt.Errorf("is %d bytes long: longer than a file name may be", len(s))
	}
	return nil
}

// userMap is the "domain: user" file of a {user} layout, read again when
// its size or modification time changes, so an admin's edit needs no
// restart.
type userMap struct {
	path string

	mu    sync.Mutex
	stamp [2]int64 // size and mtime of the file read
	read  bool
	users map[string]string
}

// lookup is the user owning domain.
func (u *userMap) lookup(domain string) (string, error) {
	fi, err := os.Stat(u.path)
	if err != nil {
		return "", &layoutError{msg: fmt.Sprintf("maildir users file: %v", err), temporary: true}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if stamp := [2]int64{fi.Size(), fi.ModTime().UnixNano()}; !u.read || stamp != u.stamp {
		users, err := readUsers(u.path)
		if err != nil {
			return "", &layoutError{msg: err.Error(), temporary: true}
		}
		u.users, u.stamp, u.read = users, stamp, true
	}
	user, ok := u.users[domain]
	if !ok {
		// No path: this text may reach the sender in a bounce.
		return "", &layoutError{msg: fmt.Sprintf("no Maildir for domain %s: it has no user in maildir_users", domain)}
	}
	return user, nil
}

// readUsers reads "domain: user" lines; blank lines and # comments are
// skipped, and a line without a colon is an error naming file:line, so a
// typo does not silently lose a domain.
func readUsers(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("maildir users file: %w", err)
	}
	defer f.Close()
	users := make(map[string]string)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		dom, user, ok := strings.Cut(line, ":")
		dom, user = strings.ToLower(strings.TrimSpace(dom)), strings.TrimSpace(user)
		if !ok || dom == "" || user == "" {
			return nil, fmt.Errorf("%s:%d: want \"domain: user\", got %q", path, n, line)
		}
		users[dom] = user
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("maildir users file %s: %w", path, err)
	}
	return users, nil
}

// deliverOne follows the Maildir protocol: write tmp/NAME, fsync it, rename
// it to new/NAME, fsync new/. NAME is unique, so the rename never replaces a
// message. Everything below pl.base is reached through directory file
// descriptors opened without following symlinks, so what is written stays
// in the Maildir the layout names, whatever a user does to their home.
func (md *Maildir) deliverOne(ctx context.Context, pl place, own owner, m *Message, rcpt string) error {
	dir, path, err := md.openMaildir(pl, own)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	var subs [3]int // tmp, new, cur
	for i, sub := range []string{"tmp", "new", "cur"} {
		fd, err := md.child(dir, path, sub, own)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		subs[i] = fd
	}
	tmpDir, newDir := subs[0], subs[1]

	src, err := m.open()
	if err != nil {
		return fmt.Errorf("error opening message: %w", err)
	}
	defer src.Close()

	name := md.uniqueName()
	tmp := filepath.Join(path, "tmp", name)
	fd, err := unix.Openat(tmpDir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("maildir: %w", &fs.PathError{Op: "open", Path: tmp, Err: err})
	}
	f := os.NewFile(uintptr(fd), tmp)
	remove := func() { unix.Unlinkat(tmpDir, name, 0) }
	if err := own.set(fd, tmp, md.o.Mode&^0o111); err != nil {
		f.Close()
		remove()
		return err
	}
	if err := md.write(ctx, f, src, m.Sender, rcpt); err != nil {
		f.Close()
		remove()
		return err
	}
	if err := f.Close(); err != nil {
		remove()
		return fmt.Errorf("maildir: close %s: %w", tmp, err)
	}
	if err := unix.Renameat(tmpDir, name, newDir, name); err != nil {
		remove()
		return fmt.Errorf("maildir: %w", &os.LinkError{Op: "rename", Old: tmp, New: filepath.Join(path, "new", name), Err: err})
	}
	if err := unix.Fsync(newDir); err != nil {
		return fmt.Errorf("maildir: fsync %s: %w", filepath.Join(path, "new"), err)
	}
	return nil
}

// write puts the MDA's trace lines and the message into f and syncs it.
func (md *Maildir) write(ctx context.Context, f *os.File, src io.Reader, sender, rcpt string) error {
	bw := bufio.NewWriterSize(f, 64<<10)
	fmt.Fprintf(bw, "Return-Path: <%s>\nDelivered-To: %s\n", wireAddr(sender), wireAddr(rcpt))
	_, err := io.Copy(bw, sourceReader{ctxReader{ctx, src}})
	if err == nil {
		err = bw.Flush()
	}
	var se *sourceError
	switch {
	case ctx.Err() != nil:
		return errors.New("delivery abandoned: " + context.Cause(ctx).Error())
	case errors.As(err, &se):
		return se
	case err != nil:
		return fmt.Errorf("maildir: write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("maildir: fsync %s: %w", f.Name(), err)
	}
	return nil
}

// openMaildir opens the Maildir of pl, creating what is missing: the fixed
// base as a path (with the configured UID and GID), every element below
// it relative to its parent's descriptor (with own). It returns the
// Maildir's descriptor and its path, for messages.
func (md *Maildir) openMaildir(pl place, own owner) (int, string, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	fd, err := unix.Open(pl.base, flags, 0)
	if err != nil {
		// Missing (or not a directory, which mkdirs words): created,
		// then opened again. The base is there at every delivery but
		// the first, so it costs no stat before the open.
		if err := md.mkdirs(pl.base); err != nil {
			return -1, "", err
		}
		fd, err = unix.Open(pl.base, flags, 0)
	}
	if err != nil {
		return -1, "", fmt.Errorf("maildir: %w", &fs.PathError{Op: "open", Path: pl.base, Err: err})
	}
	path := pl.base
	for _, e := range pl.elems {
		next, err := md.child(fd, path, e, own)
		unix.Close(fd)
		if err != nil {
			return -1, "", err
		}
		fd, path = next, filepath.Join(path, e)
	}
	return fd, path, nil
}

// child opens directory name in parent (whose path is path) without
// following a symlink, creating it with the mode and own when it is
// missing. A new directory must itself survive a crash before a message
// in it can, so it is synced in its parent. A symlink is an unsafePathError:
// someone who can write the parent wants mxgate to write elsewhere.
func (md *Maildir) child(parent int, path, name string, own owner) (int, error) {
	p := filepath.Join(path, name)
	created := false
	for {
		fd, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		switch {
		case err == nil:
			if !created {
				return fd, nil
			}
			if err := own.set(fd, p, md.o.Mode); err != nil {
				unix.Close(fd)
				return -1, err
			}
			if err := unix.Fsync(parent); err != nil {
				unix.Close(fd)
				return -1, fmt.Errorf("maildir: fsync %s: %w", path, err)
			}
			return fd, nil
		case err == unix.ENOENT && !created:
			err := unix.Mkdirat(parent, name, uint32(md.o.Mode.Perm()))
			if err != nil && err != unix.EEXIST {
				return -1, fmt.Errorf("maildir: %w", &fs.PathError{Op: "mkdir", Path: p, Err: err})
			}
			// EEXIST: made meanwhile by another delivery; not ours to own.
			created = err == nil
		case err == unix.ELOOP || err == unix.ENOTDIR:
			var st unix.Stat_t
			if unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				return -1, unsafePathError{fmt.Errorf("maildir: %s is a symbolic link: unsafe path, not followed", p)}
			}
			return -1, fmt.Errorf("maildir: %w", &fs.PathError{Op: "mkdir", Path: p, Err: unix.ENOTDIR})
		default:
			return -1, fmt.Errorf("maildir: %w", &fs.PathError{Op: "open", Path: p, Err: err})
		}
	}
}

// mkdirs creates the fixed base p and its missing parents, outermost
// first, each with the mode and the configured owner, synced in its parent.
func (md *Maildir) mkdirs(p string) error {
	if fi, err := os.Stat(p); err == nil {
		if fi.IsDir() {
			return nil
		}
		return fmt.Errorf("maildir: %w", &fs.PathError{Op: "mkdir", Path: p, Err: syscall.ENOTDIR})
	}
	parent := filepath.Dir(p)
	if parent != p {
		if err := md.mkdirs(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(p, md.o.Mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("maildir: %w", err)
	}
	if err := os.Chmod(p, md.o.Mode); err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	if md.o.UID != -1 || md.o.GID != -1 {
		if err := os.Lchown(p, md.o.UID, md.o.GID); err != nil {
			return fmt.Errorf("maildir: %w", err)
		}
	}
	return syncDir(parent)
}

// owner is who gets what a delivery creates; -1 leaves a part the
// process's.
type owner struct{ uid, gid int }

// set gives the open file or directory fd (at p) mode, which the umask may
// have cut, and the owner.
func (o owner) set(fd int, p string, mode os.FileMode) error {
	if err := unix.Fchmod(fd, uint32(mode.Perm())); err != nil {
		return fmt.Errorf("maildir: %w", &fs.PathError{Op: "chmod", Path: p, Err: err})
	}
	if o.uid != -1 || o.gid != -1 {
		if err := unix.Fchown(fd, o.uid, o.gid); err != nil {
			return fmt.Errorf("maildir: %w", &fs.PathError{Op: "chown", Path: p, Err: err})
		}
	}
	return nil
}

// ownerTTL is how long a looked-up {user} owner is used: a burst of
// deliveries reads the user database once, and a new or renumbered
// account is seen within a minute.
const ownerTTL = time.Minute

// owners are the system users of maildir_owner "{user}", looked up by name
// and cached for ownerTTL.
type owners struct {
	mu sync.Mutex
	m  map[string]ownerEntry
}

type ownerEntry struct {
	owner
	at time.Time
}

// lookup is user's uid and primary group. A user the system does not know
// is an error for an admin to fix (the account is being created, or
// maildir_users names a stale one), so the recipient is deferred; it is
// not cached, so the fix is seen at the next try.
func (o *owners) lookup(name string) (owner, error) {
	o.mu.Lock()
	e, ok := o.m[name]
	o.mu.Unlock()
	if ok && time.Since(e.at) < ownerTTL {
		return e.owner, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		if errors.As(err, new(user.UnknownUserError)) {
			return owner{}, fmt.Errorf("maildir: no system user %q to own the Maildir (maildir_owner \"{user}\")", name)
		}
		return owner{}, fmt.Errorf("maildir: looking up the owner of the Maildir: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return owner{}, fmt.Errorf("maildir: user %q has a uid that is not a number: %q", name, u.Uid)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return owner{}, fmt.Errorf("maildir: user %q has a gid that is not a number: %q", name, u.Gid)
	}
	e = ownerEntry{owner{uid, gid}, time.Now()}
	o.mu.Lock()
	if o.m == nil {
		o.m = make(map[string]ownerEntry)
	}
	o.m[name] = e
	o.mu.Unlock()
	return e.owner, nil
}

// uniqueName is the Maildir spec's <time>.M<usec>P<pid>Q<count>.<host>.
func (md *Maildir) uniqueName() string {
	now := time.Now()
	return fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, md.pid, deliveries.Add(1), md.host)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("maildir: fsync %s: %w", dir, err)
	}
	return nil
}

// ctxReader stops a long copy when the delivery is abandoned.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// DirTemporary reports an error of Dir that a later try may not get: the
// users file could not be read. Every other error of Dir is for good.
func DirTemporary(err error) bool {
	var le *layoutError
	return errors.As(err, &le) && le.temporary
}
