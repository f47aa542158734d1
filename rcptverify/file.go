package rcptverify

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// recipientsFile is a recipients list (Postfix's relay_recipient_maps):
// one address a line, "@domain" for a domain that takes every local part,
// "#" comments and blank lines. It is read again when it changes (mtime,
// size or inode), checked at most once a second, with no restart; a
// version that does not parse leaves the last good one in use and a
// paniclog line naming FILE:LINE.
type recipientsFile struct {
	path  string
	panic func(string)

	mu      sync.Mutex
	checked time.Time // last stat
	stamp   fileStamp // of the version in use, or of the last one refused
	list    *recipients
	loadErr string // why there is no list at all
}

type fileStamp struct {
	mtime time.Time
	size  int64
	ino   uint64
}

// recipients is one parsed version of the file.
type recipients struct {
	addrs   map[string]bool // local@domain, domain lower-cased
	lower   map[string]bool // the same, local parts lower-cased too
	domains map[string]bool // catch-all domains
}

// recheck is how often the file is looked at for a change.
const recheck = time.Second

// lookup says whether key (local@domain as the store keys it) is listed;
// lowercase compares the local parts of the list lower-cased too. A file
// that cannot be read, and never could, is store trouble: Defer.
func (f *recipientsFile) lookup(key string, lowercase bool) Result {
	list, err := f.current(time.Now())
	if list == nil {
		return Result{Verdict: Defer, Key: key, Detail: err}
	}
	_, domain, _ := strings.Cut(key, "@")
	switch {
	case list.addrs[key], lowercase && list.lower[key]:
		return Result{Verdict: Found, Key: key, Detail: "listed in " + f.path}
	case list.domains[domain]:
		return Result{Verdict: Found, Key: key, Detail: "@" + domain + " listed in " + f.path}
	}
	return Result{Verdict: NotFound, Key: key, Detail: "not in recipients file " + f.path}
}

// current returns the list in use, read again first when the file
// changed.
func (f *recipientsFile) current(now time.Time) (*recipients, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.list != nil && now.Sub(f.checked) < recheck {
		return f.list, ""
	}
	f.checked = now
	fi, err := os.Stat(f.path)
	if err != nil {
		if f.list == nil {
			f.loadErr = fmt.Sprintf("recipients file: %v", err)
		}
		return f.list, f.loadErr
	}
	st := fileStamp{mtime: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	if (f.list != nil || f.loadErr != "") && st == f.stamp {
		return f.list, f.loadErr
	}
	f.stamp = st
	data, err := os.ReadFile(f.path)
	if err != nil {
		if f.list == nil {
			f.loadErr = fmt.Sprintf("recipients file: %v", err)
		}
		return f.list, f.loadErr
	}
	list, err := parseRecipients(f.path, data)
	if err != nil {
		keeping := "no list in use: its recipients are deferred"
		if f.list != nil {
			keeping = "the previous version stays in use"
		} else {
			f.loadErr = fmt.Sprintf("recipients file: %v", err)
		}
		f.panic(fmt.Sprintf("recipients file %v; %s", err, keeping))
		return f.list, f.loadErr
	}
	f.list, f.loadErr = list, ""
	return f.list, ""
}

// parseRecipients reads a recipients file; the error names PATH:LINE.
func parseRecipients(path string, data []byte) (*recipients, error) {
	r := &recipients{addrs: map[string]bool{}, lower: map[string]bool{}, domains: map[string]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 64*1024)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.ContainsAny(line, " \t\"<>") {
			return nil, fmt.Errorf("%s:%d: %q: one address a line, without spaces, quotes or angle brackets", path, n, line)
		}
		at := strings.LastIndexByte(line, '@')
		if at < 0 || at == len(line)-1 || strings.Contains(line[at+1:], "..") {
			return nil, fmt.Errorf("%s:%d: %q is not local@domain nor @domain", path, n, line)
		}
		domain := strings.ToLower(strings.TrimSuffix(line[at+1:], "."))
		if at == 0 {
			r.domains[domain] = true
			continue
		}
		r.addrs[line[:at]+"@"+domain] = true
		r.lower[strings.ToLower(line[:at])+"@"+domain] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", path, n+1, err)
	}
	return r, nil
}
