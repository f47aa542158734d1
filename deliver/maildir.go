package deliver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// maildirTransport delivers recipient local@domain into the Maildir
// root/domain/local/, the layout Dovecot's maildir:DIR/%d/%n expects.
type maildirTransport struct {
	root string
	host string // hostname as the Maildir unique-name spec escapes it
	pid  int
}

// deliveries is the Q part of the unique name: unique within the process
// even when two deliveries share the same microsecond.
var deliveries atomic.Uint64

func newMaildir(root string) *maildirTransport {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	// The spec's escapes: "/" and ":" must not appear in a file name (":"
	// starts the info part of names in cur/).
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	return &maildirTransport{root: root, host: host, pid: os.Getpid()}
}

func (md *maildirTransport) Name() string { return "maildir" }

// Deliver writes one file per recipient. Problems with a recipient's address
// fail it; I/O errors (a full disk, permissions) defer it, since an admin can
// fix them.
func (md *maildirTransport) Deliver(ctx context.Context, m *Message) []Result {
	if err := checkAddr(m.Sender); err != nil {
		return results(m, "", Failed, BadAddress, "sender "+err.Error())
	}
	rs := results(m, "", Deferred, NoReason, "")
	for i, rcpt := range m.Recipients {
		if ctx.Err() != nil {
			rs[i].Reason, rs[i].Err = Abandoned, "delivery abandoned: "+context.Cause(ctx).Error()
			continue
		}
		dir, err := md.dir(rcpt)
		if err != nil {
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

// MaildirDir is the Maildir that a maildir:///root downstream delivers rcpt
// into (what -bt shows), or why rcpt cannot have one.
func MaildirDir(root, rcpt string) (string, error) {
	return (&maildirTransport{root: root}).dir(rcpt)
}

// dir is the Maildir for rcpt. Both parts become path elements, so anything
// that could leave root or hide the directory is refused.
func (md *maildirTransport) dir(rcpt string) (string, error) {
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
	local = plainLocal(local)
	if err := safeElement(local); err != nil {
		return "", unsafePathError{fmt.Errorf("address %q: local part %w", rcpt, err)}
	}
	return filepath.Join(md.root, domain, local), nil
}

// unsafePathError marks an address part that cannot be a Maildir path
// element (the MaildirUnsafePath reason).
type unsafePathError struct{ error }

func (e unsafePathError) Unwrap() error { return e.error }

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

// deliverOne follows the Maildir protocol: write tmp/NAME, fsync it, rename
// it to new/NAME, fsync new/. NAME is unique, so the rename never replaces a
// message.
func (md *maildirTransport) deliverOne(ctx context.Context, dir string, m *Message, rcpt string) error {
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
func (md *maildirTransport) write(ctx context.Context, f *os.File, src io.Reader, sender, rcpt string) error {
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

// ensure creates the Maildir's tmp, new and cur when missing. A directory
// just created must itself survive a crash before a message in it can, so
// the new entries are synced up to root.
func (md *maildirTransport) ensure(dir string) error {
	created := false
	for _, sub := range []string{"tmp", "new", "cur"} {
		p := filepath.Join(dir, sub)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			continue
		}
		if err := os.MkdirAll(p, 0o700); err != nil {
			return fmt.Errorf("maildir: %w", err)
		}
		created = true
	}
	if !created {
		return nil
	}
	for _, d := range []string{dir, filepath.Dir(dir), md.root} {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// uniqueName is the Maildir spec's <time>.M<usec>P<pid>Q<count>.<host>.
func (md *maildirTransport) uniqueName() string {
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
