package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSinkCount(t *testing.T) {
	tests := []struct {
		name, output string
		want         int
	}{
		{"nothing yet", "", 0},
		{"a start-up line only", "smtp-sink: warning: something\n", 0},
		{"counters", "sess=1 quit=0 mesg=1\rsess=1 quit=1 mesg=1\rsess=2 quit=1 mesg=2\r", 2},
		{"the last line half written", "sess=9 quit=9 mesg=9\rsess=10 quit=9 mesg=1", 9},
		{"a warning after the counters", "sess=3 quit=3 mesg=3\rsmtp-sink: warning: x\n", 3},
		{"past the tail read", strings.Repeat("sess=1 quit=1 mesg=1\r", 100) + "sess=2 quit=2 mesg=2999\r", 2999},
	}
	for _, tt := range tests {
		file := filepath.Join(t.TempDir(), "smtp-sink.log")
		if err := os.WriteFile(file, []byte(tt.output), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := sinkCount(file)
		if err != nil || got != tt.want {
			t.Errorf("%s: sinkCount = %d, %v; want %d", tt.name, got, err, tt.want)
		}
	}
	if _, err := sinkCount(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing file: no error")
	}
}
