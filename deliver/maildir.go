package deliver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
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
	Lowercase bool        // local parts lower-cased, as Dovecot's %Lu
	UID, GID  int         // owner of what is created; -1 leaves it the process's
	Mode      os.FileMode // of the directories created; files get it without x bits
}

// Maildir delivers recipient local@domain into the Maildir its layout
// names. It is the maildir:// Transport, and its Dir is what -bt shows.
type Maildir struct {
	o     MaildirOptions
	users *userMap
	host  string // hostname as the Maildir unique-name spec escapes it
	pid   int
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
	md := &Maildir{o: o, host: host, pid: os.Getpid()}
	if o.Users != "" {
		md.users = &userMap{path: o.Users}
	}
	return md
}

// Name is the transport's name, logged as T=.
func (md *Maildir) Name() string { return "maildir" }

// Deliver writes one file per recipient. Problems with a recipient's address
// fail it; I/O errors (a full disk, permissions) defer it, since an admin can
// fix them.
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
		dir, err := md.Dir(rcpt)
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
		if err := md.deliverOne(ctx, dir, m, rcpt); err != nil {
			rs[i].Reason, rs[i].Err = LocalError, err.Error()
			if ctx.Err() != nil {
				rs[i].Reason = Abandoned
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
	if err := checkAddr(rcpt); err != nil {
		return "", err
	}
	local, domain, ok := splitAddr(rcpt)
	if !ok {
		return "", fmt.Errorf("address %q has no domain: cannot choose a Maildir", rcpt)
	}
	domain = strings.ToLower(domain)
	if err := safeElement(domain); err != nil {
		return "", unsafePathError{fmt.Errorf("address %q: domain %w", rcpt, err)}
	}
	local = md.mailbox(plainLocal(local))
	if err := safeElement(local); err != nil {
		return "", unsafePathError{fmt.Errorf("address %q: local part %w", rcpt, err)}
	}
	fields := map[string]string{"{domain}": domain, "{local}": local}
	if strings.Contains(md.o.Layout, "{user}") {
		user, err := md.users.lookup(domain)
		if err != nil {
			return "", err
		}
		if err := safeElement(user); err != nil {
			return "", unsafePathError{fmt.Errorf("address %q: the user of %s in maildir_users %w", rcpt, domain, err)}
		}
		fields["{user}"] = user
	}
	p := layoutField.ReplaceAllStringFunc(md.o.Layout, func(f string) string { return fields[f] })
	if !filepath.IsAbs(p) {
		p = filepath.Join(md.o.Root, p)
	}
	return filepath.Clean(p), nil
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
// message.
func (md *Maildir) deliverOne(ctx context.Context, dir string, m *Message, rcpt string) error {
	if err := md.ensure(dir); err != nil {
		return err
	}
	src, err := m.open()
	if err != nil {
		return fmt.Errorf("error opening message: %w", err)
	}
	defer src.Close()

	name := md.uniqueName()
	tmp := filepath.Join(dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	if err := md.own(f.Name(), md.o.Mode&^0o111, f); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := md.write(ctx, f, src, m.Sender, rcpt); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("maildir: close %s: %w", tmp, err)
	}
	newDir := filepath.Join(dir, "new")
	if err := os.Rename(tmp, filepath.Join(newDir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("maildir: %w", err)
	}
	return syncDir(newDir)
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

// ensure creates the Maildir's tmp, new and cur when missing, and any
// missing parent up to the first that exists, each with the configured
// mode and owner. A directory just created must itself survive a crash
// before a message in it can, so each new entry is synced in its parent.
func (md *Maildir) ensure(dir string) error {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := md.mkdirs(filepath.Join(dir, sub)); err != nil {
			return err
		}
	}
	return nil
}

// mkdirs creates p and its missing parents, outermost first.
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
	if err := md.own(p, md.o.Mode, nil); err != nil {
		return err
	}
	return syncDir(parent)
}

// own gives a new file or directory the configured mode (the umask may
// have taken bits off) and owner. f, when given, is the open file.
func (md *Maildir) own(p string, mode os.FileMode, f *os.File) error {
	chmod, chown := os.Chmod, os.Lchown
	if f != nil {
		chmod = func(_ string, m os.FileMode) error { return f.Chmod(m) }
		chown = func(_ string, uid, gid int) error { return f.Chown(uid, gid) }
	}
	if err := chmod(p, mode); err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	if md.o.UID != -1 || md.o.GID != -1 {
		if err := chown(p, md.o.UID, md.o.GID); err != nil {
			return fmt.Errorf("maildir: %w", err)
		}
	}
	return nil
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
