package auth

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/GehirnInc/crypt"
	_ "github.com/GehirnInc/crypt/sha256_crypt" // $5$
	_ "github.com/GehirnInc/crypt/sha512_crypt" // $6$
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// PasswdFile is a passwd-file backend: lines "user:hash" (Dovecot's
// passwd-file format; fields after the second are ignored), the hash
// optionally prefixed by its Dovecot scheme ({BLF-CRYPT}, {SHA512-CRYPT},
// {ARGON2ID}, {CRYPT}). The file is read again when it changes (looked
// at once a second); a version that does not parse is refused with a
// paniclog line and the previous one stays in use.
type PasswdFile struct {
	path  string
	panic func(string)

	mu      sync.Mutex
	checked time.Time
	stamp   fileStamp
	users   map[string]string // user -> hash without its {SCHEME}
	// readErr is the last failure to read the file, logged once.
	readErr string
}

type fileStamp struct {
	mtime time.Time
	size  int64
	ino   uint64
}

const recheck = time.Second

// OpenPasswdFile reads path; panicLog gets the refusals of later versions.
func OpenPasswdFile(path string, panicLog func(string)) (*PasswdFile, error) {
	f := &PasswdFile{path: path, panic: panicLog}
	if f.panic == nil {
		f.panic = func(string) {}
	}
	if _, err := f.current(time.Now()); err != nil {
		return nil, err
	}
	return f, nil
}

// Check verifies pass against user's hash. An unknown user costs a bcrypt
// comparison too, so timing does not tell which users exist.
func (f *PasswdFile) Check(_ context.Context, user, pass string) (bool, error) {
	users, err := f.current(time.Now())
	if users == nil {
		return false, fmt.Errorf("%w: %v", ErrBackend, err)
	}
	h, ok := users[user]
	if !ok {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(pass))
		return false, nil
	}
	return verify(h, pass), nil
}

// Hash is user's hash as the file now has it (read again at most once a
// second), false when the user is not there; the console ends a session
// whose admin was removed or given a new password.
func (f *PasswdFile) Hash(user string) (string, bool) {
	users, _ := f.current(time.Now())
	h, ok := users[user]
	return h, ok
}

// dummyHash is compared against for users that do not exist.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("x"), bcrypt.DefaultCost)

func (f *PasswdFile) Close() error { return nil }

func (f *PasswdFile) current(now time.Time) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.users != nil && now.Sub(f.checked) < recheck {
		return f.users, nil
	}
	f.checked = now
	fi, err := os.Stat(f.path)
	if err != nil {
		return f.users, f.readFailed(err)
	}
	st := fileStamp{mtime: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	if f.users != nil && st == f.stamp {
		return f.users, nil
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		// The stamp stays the old one, so a chmod that makes the file
		// readable again (its mtime unchanged) is seen.
		return f.users, f.readFailed(err)
	}
	f.readErr = ""
	f.stamp = st
	users, err := ParsePasswd(f.path, data)
	if err != nil {
		if f.users != nil {
			f.panic(fmt.Sprintf("passwd-file %v; the previous version stays in use", err))
		}
		return f.users, err
	}
	f.users = users
	return users, nil
}

// readFailed is err as current returns it. With users in hand (the file
// was read before: a daemon that dropped its privileges may no longer
// read it) they stay in use, and the paniclog says so once per failure,
// not on every request.
func (f *PasswdFile) readFailed(err error) error {
	err = fmt.Errorf("passwd-file: %w", err)
	if f.users != nil && err.Error() != f.readErr {
		f.readErr = err.Error()
		f.panic(fmt.Sprintf("%v; the previous version stays in use", err))
	}
	return err
}

// ParsePasswd reads a passwd-file; an error names PATH:LINE. Every hash
// must be of a scheme Check can verify.
func ParsePasswd(path string, data []byte) (map[string]string, error) {
	users := map[string]string{}
	for i, line := range bytes.Split(data, []byte("\n")) {
		s := strings.TrimSpace(string(line))
		if s == "" || s[0] == '#' {
			continue
		}
		user, rest, ok := strings.Cut(s, ":")
		hash, _, _ := strings.Cut(rest, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("%s:%d: want user:hash", path, i+1)
		}
		h, err := stripScheme(hash)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: user %s: %w", path, i+1, user, err)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("%s:%d: user %s is listed twice", path, i+1, user)
		}
		users[user] = h
	}
	return users, nil
}

// stripScheme removes Dovecot's {SCHEME} prefix and checks that the hash
// is of a kind verify knows, by its own $id$.
func stripScheme(hash string) (string, error) {
	h := hash
	if strings.HasPrefix(h, "{") {
		scheme, rest, ok := strings.Cut(h[1:], "}")
		if !ok {
			return "", fmt.Errorf("unterminated {SCHEME} in %q", clip(hash))
		}
		switch strings.ToUpper(scheme) {
		case "BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "ARGON2I", "ARGON2ID", "CRYPT":
		default:
			return "", fmt.Errorf("unsupported scheme {%s} (want BLF-CRYPT, SHA512-CRYPT, SHA256-CRYPT, ARGON2I, ARGON2ID)", scheme)
		}
		h = rest
	}
	switch {
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			return "", fmt.Errorf("bad bcrypt hash: %w", err)
		}
	case strings.HasPrefix(h, "$5$"), strings.HasPrefix(h, "$6$"):
	case strings.HasPrefix(h, "$argon2"):
		if _, err := parseArgon2(h); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("unsupported hash %q (want $2y$ bcrypt, $6$ SHA512-CRYPT, $5$ SHA256-CRYPT or $argon2id$)", clip(h))
	}
	return h, nil
}

func verify(hash, pass string) bool {
	switch {
	case strings.HasPrefix(hash, "$2"):
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass)) == nil
	case strings.HasPrefix(hash, "$5$"), strings.HasPrefix(hash, "$6$"):
		c := crypt.NewFromHash(hash)
		return c != nil && c.Verify(hash, []byte(pass)) == nil
	case strings.HasPrefix(hash, "$argon2"):
		a, err := parseArgon2(hash)
		return err == nil && a.verify(pass)
	}
	return false
}

// argon2Hash is a PHC string: $argon2id$v=19$m=65536,t=3,p=1$SALT$HASH
// (salt and hash in unpadded standard base64).
type argon2Hash struct {
	id            bool
	memory, time  uint32
	threads       uint8
	salt, derived []byte
}

var errArgon2 = errors.New("bad argon2 hash (want $argon2id$v=19$m=M,t=T,p=P$SALT$HASH)")

func parseArgon2(h string) (*argon2Hash, error) {
	f := strings.Split(h, "$")
	if len(f) != 6 || f[0] != "" || (f[1] != "argon2id" && f[1] != "argon2i") || f[2] != "v=19" {
		return nil, errArgon2
	}
	a := &argon2Hash{id: f[1] == "argon2id"}
	for _, kv := range strings.Split(f[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return nil, errArgon2
		}
		switch k {
		case "m":
			a.memory = uint32(n)
		case "t":
			a.time = uint32(n)
		case "p":
			if n > 255 {
				return nil, errArgon2
			}
			a.threads = uint8(n)
		default:
			return nil, errArgon2
		}
	}
	var err error
	if a.salt, err = base64.RawStdEncoding.DecodeString(f[4]); err != nil {
		return nil, errArgon2
	}
	if a.derived, err = base64.RawStdEncoding.DecodeString(f[5]); err != nil || len(a.derived) == 0 {
		return nil, errArgon2
	}
	// A hash asking for more than 4 GiB of memory is refused before it
	// is ever computed.
	if a.memory == 0 || a.time == 0 || a.threads == 0 || a.memory > 4<<20 {
		return nil, errArgon2
	}
	return a, nil
}

func (a *argon2Hash) verify(pass string) bool {
	n := uint32(len(a.derived))
	var got []byte
	if a.id {
		got = argon2.IDKey([]byte(pass), a.salt, a.time, a.memory, a.threads, n)
	} else {
		got = argon2.Key([]byte(pass), a.salt, a.time, a.memory, a.threads, n)
	}
	return subtle.ConstantTimeCompare(got, a.derived) == 1
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
