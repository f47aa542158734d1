package digest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMakeKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "digest.key")
	key, err := MakeKey(path)
	if err != nil || len(key) != KeySize {
		t.Fatalf("MakeKey = %d bytes, %v", len(key), err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	again, err := MakeKey(path)
	if err != nil || !bytes.Equal(again, key) {
		t.Errorf("second MakeKey made another key (%v)", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("files left beside the key: %v", entries)
	}
	other, err := MakeKey(filepath.Join(t.TempDir(), "digest.key"))
	if err != nil || bytes.Equal(other, key) {
		t.Errorf("two keys made alike (%v)", err)
	}
}

func TestLoadKeyRefuses(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("0123456789"), 0o600)
	if _, err := LoadKey(short); err == nil || !strings.Contains(err.Error(), "10 bytes, want at least 32") {
		t.Errorf("LoadKey of a short key: %v", err)
	}
	if _, err := MakeKey(short); err == nil {
		t.Errorf("MakeKey replaced or took a short key")
	}
	if _, err := LoadKey(filepath.Join(dir, "absent")); err == nil {
		t.Errorf("LoadKey of no file: no error")
	}
}
