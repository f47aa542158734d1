package digest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// KeySize is the bytes of a key MakeKey makes; LoadKey takes no fewer.
const KeySize = 32

// LoadKey reads the links' key from path.
func LoadKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("digest key: %w", err)
	}
	if len(key) < KeySize {
		return nil, fmt.Errorf("digest key %s: %d bytes, want at least %d (remove it and a new one is made at the next start)", path, len(key), KeySize)
	}
	return key, nil
}

// MakeKey is LoadKey, making the file first when it does not exist: 32
// random bytes, mode 0600, owned by the calling process's user (the
// daemon calls it after dropping root). Two processes making it at once
// agree: the file appears whole (a link of a complete temporary file)
// and the loser reads the winner's.
func MakeKey(path string) ([]byte, error) {
	key, err := LoadKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key = make([]byte, KeySize)
	rand.Read(key)
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, key, 0o600); err != nil {
		return nil, fmt.Errorf("digest key: %w", err)
	}
	defer os.Remove(tmp)
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("digest key: %w", err)
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("digest key: %w", err)
	}
	return LoadKey(path)
}
