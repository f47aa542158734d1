package main

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestStartPprof(t *testing.T) {
	tests := []struct {
		addr        string
		fails       bool
		notLoopback bool
	}{
		{addr: "127.0.0.1:0"},
		{addr: "127.0.0.2:0"},
		{addr: "0.0.0.0:0", fails: true, notLoopback: true},
		{addr: "192.0.2.1:6060", fails: true, notLoopback: true},
		{addr: "localhost:6060", fails: true, notLoopback: true},
		{addr: "127.0.0.1", fails: true},
	}
	for _, tt := range tests {
		got, err := startPprof(tt.addr)
		if tt.fails {
			if err == nil || !strings.Contains(err.Error(), pprofEnv) || errors.Is(err, errNotLoopback) != tt.notLoopback {
				t.Errorf("%s: error %v, want one naming %s (not loopback: %v)", tt.addr, err, pprofEnv, tt.notLoopback)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.addr, err)
		}
		resp, err := http.Get("http://" + got.String() + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			t.Fatalf("%s: %v", tt.addr, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile:") {
			t.Errorf("%s: GET goroutine profile: %s, %.80q", tt.addr, resp.Status, body)
		}
	}
}
