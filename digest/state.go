package digest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"mxgate/spool"
)

// State is what each recipient has been told: the (message, recipient)
// pairs a digest has listed, so a message is listed once. It lives in
// DATA_DIR/digest.state, one "ID RECIPIENT" line per pair (recipients
// lower-cased), and forgets a pair once the message has left the
// quarantine for that recipient.
type State struct {
	told map[string]bool
}

func stateKey(id spool.ID, rcpt string) string { return string(id) + " " + strings.ToLower(rcpt) }

// Has reports whether a digest has listed id for rcpt (any case).
func (s *State) Has(id spool.ID, rcpt string) bool {
	return s != nil && s.told[stateKey(id, rcpt)]
}

// Add records that a digest listed id for rcpt.
func (s *State) Add(id spool.ID, rcpt string) {
	if s.told == nil {
		s.told = map[string]bool{}
	}
	s.told[stateKey(id, rcpt)] = true
}

// prune forgets every pair that is not pending in list.
func (s *State) prune(list []spool.QuarantineEntry) {
	keep := map[string]bool{}
	for _, e := range list {
		for _, r := range e.Envelope.Pending() {
			if k := stateKey(e.Envelope.ID, r); s.told[k] {
				keep[k] = true
			}
		}
	}
	s.told = keep
}

// LoadState reads the state file; a missing one is an empty state.
func LoadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	s := &State{told: map[string]bool{}}
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("digest state: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		id, rcpt, ok := strings.Cut(sc.Text(), " ")
		if !ok || !spool.ValidID(id) || rcpt == "" {
			return nil, fmt.Errorf("digest state %s:%d: want \"ID RECIPIENT\", got %q", path, n, sc.Text())
		}
		s.told[id+" "+rcpt] = true
	}
	return s, nil
}

// save replaces the state file by a rename, so a crash leaves the old
// state or the new one; the worst a lost update does is list a message
// twice.
func (s *State) save(path string) error {
	var b bytes.Buffer
	for k := range s.told {
		b.WriteString(k + "\n")
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("digest state: %w", err)
	}
	_, err = f.Write(b.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("digest state: %w", err)
	}
	return nil
}
