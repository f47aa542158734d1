package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"
)

func init() {
	register("admin passwd", "USER [--file FILE]\tset the web console password of USER in the [admin] users file", adminPasswd,
		withDoc(`Asks for the password twice on the terminal (without echo), or reads
one line from standard input when it is not a terminal, and writes USER's
line "USER:BCRYPT-HASH" (cost 12) into the users file: [admin] users of the
config, or FILE. An existing line of USER is replaced, the others are kept;
the file is written to a temporary file and renamed over the old one,
keeping the old file's mode, owner and group (a new file gets mode 0640
and the daemon's group, so the daemon can read it). A users file that is
a symbolic link is written through: its target is replaced, the link
stays. Two runs at once take turns (an flock of FILE.lock beside it), so
neither loses the other's user; the file and its directory are synced
to disk before the command says it is done. The console reads the file again when it
changes: the password works at once, without a reload.`),
		withFlag("--file", "FILE", "the users file to write instead of [admin] users"),
		withExample("mxgate admin passwd alice\tadd alice, or change her password"),
		withExample("printf '%s\\n' \"$PW\" | mxgate admin passwd --file /etc/mxgate/admins bob\tfrom a script"))
}

// passwdCost is the bcrypt cost of the hashes admin passwd writes.
const passwdCost = 12

func adminPasswd(e *env) error {
	var user, file string
	for i := 0; i < len(e.args); i++ {
		a := e.args[i]
		switch {
		case a == "--file" || a == "-file":
			if i+1 == len(e.args) {
				return fmt.Errorf("%s needs a file: %w", a, errUsage)
			}
			i++
			file = e.args[i]
		case strings.HasPrefix(a, "--file="):
			file = strings.TrimPrefix(a, "--file=")
		case strings.HasPrefix(a, "-") && a != "-":
			return fmt.Errorf("unknown flag %s: %w", a, errUsage)
		case user == "":
			user = a
		default:
			return fmt.Errorf("unexpected argument %q: %w", a, errUsage)
		}
	}
	if user == "" {
		return fmt.Errorf("give the user's name: %w", errUsage)
	}
	if err := checkAdminName(user); err != nil {
		return err
	}
	gid := -1
	if file == "" {
		cfg, err := loadClientConfig(e.configPath)
		if err != nil {
			return err
		}
		if cfg.Admin.Users == "" {
			return errors.New("the config sets no [admin] users file: set it, or give --file FILE")
		}
		file = cfg.Admin.Users
		if cfg.User != "" {
			gid = cfg.GID
		}
	}
	pass, err := readNewPassword(e, user)
	if err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), passwdCost)
	if err != nil {
		return err
	}
	added, err := writeUsersLine(file, user, string(hash), gid)
	if err != nil {
		return err
	}
	if added {
		fmt.Fprintf(e.stdout, "user %s added to %s\n", user, file)
	} else {
		fmt.Fprintf(e.stdout, "password of %s changed in %s\n", user, file)
	}
	return nil
}

// checkAdminName refuses a name the file format or a mainlog line cannot
// hold.
func checkAdminName(user string) error {
	if strings.ContainsAny(user, ":#") || strings.IndexFunc(user, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return fmt.Errorf("invalid user name %q: no colon, #, space or control characters", user)
	}
	return nil
}

// readNewPassword asks twice on a terminal, without echo; from anything
// else it reads one line.
func readNewPassword(e *env, user string) (string, error) {
	if f, ok := e.stdin.(*os.File); ok {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			fmt.Fprintf(e.stderr, "New password for %s: ", user)
			p1, err := readHidden(f, e.stderr)
			if err != nil {
				return "", err
			}
			fmt.Fprint(e.stderr, "Again: ")
			p2, err := readHidden(f, e.stderr)
			if err != nil {
				return "", err
			}
			if p1 != p2 {
				return "", errors.New("the passwords differ; nothing changed")
			}
			return nonEmpty(p1)
		}
	}
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	return nonEmpty(strings.TrimRight(line, "\r\n"))
}

func nonEmpty(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty password; nothing changed")
	}
	return p, nil
}

// readHidden reads a line from the terminal f with its echo off.
func readHidden(f *os.File, prompt io.Writer) (string, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", err
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", err
	}
	defer func() {
		unix.IoctlSetTermios(fd, unix.TCSETS, old)
		fmt.Fprintln(prompt) // the newline the terminal did not echo
	}()
	var b []byte
	one := make([]byte, 1)
	for {
		n, err := f.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				break
			}
			b = append(b, one[0])
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(b) > 0 {
				break
			}
			return "", err
		}
	}
	return strings.TrimRight(string(b), "\r"), nil
}

// writeUsersLine puts "user:hash" into the users file, replacing user's
// line or appending one, atomically: a temporary file renamed over it,
// with the old file's mode and owner (a new file gets 0640 and group
// gid, when not -1). A symbolic link is written through: its target is
// the file replaced, the link stays. The read and the rename are under an
// flock of PATH.lock beside the file, so that two runs at once do not
// lose an update; the file and its directory are fsynced. It reports
// whether the user is new.
func writeUsersLine(path, user, hash string, gid int) (bool, error) {
	path, err := resolveLink(path)
	if err != nil {
		return false, err
	}
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return false, err
	}
	defer unlock()
	old, err := os.ReadFile(path)
	uid := -1
	mode := fs.FileMode(0o640)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, err
	default:
		fi, err := os.Stat(path)
		if err != nil {
			return false, err
		}
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	line := user + ":" + hash
	var out bytes.Buffer
	added := true
	for l := range strings.Lines(string(old)) {
		name, _, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && name == user {
			if added {
				out.WriteString(line + "\n")
			}
			added = false
			continue
		}
		out.WriteString(l)
		if !strings.HasSuffix(l, "\n") {
			out.WriteByte('\n')
		}
	}
	if added {
		out.WriteString(line + "\n")
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing is there
	err = tmp.Chmod(mode)
	if err == nil && (uid != -1 || gid != -1) {
		// Only root may give a file away; anyone else keeps what they can.
		if cerr := tmp.Chown(uid, gid); cerr != nil && os.Geteuid() == 0 {
			err = cerr
		}
	}
	if err == nil {
		_, err = tmp.Write(out.Bytes())
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	return added, nil
}

// resolveLink is path with its symbolic links resolved, so that a users
// file that is a link has its target replaced, not the link. A link to a
// file not there yet resolves to that file.
func resolveLink(path string) (string, error) {
	for range 40 { // the kernel's own bound on a chain of links
		target, err := os.Readlink(path)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EINVAL) {
			// Not there, or not a link: the directories may still be links,
			// which a rename inside them goes through anyway.
			return path, nil
		}
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = target
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", path)
}

// lockFile takes an exclusive flock of path (made 0600 when it is not
// there; it stays, since removing it would let a third run lock another
// file) and returns its release.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking the users file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking the users file: flock %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
