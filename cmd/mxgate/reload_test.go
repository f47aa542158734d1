package main

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"mxgate/config"
)

// TestKeepFixed: a reload keeps each restart-only setting at its old
// value and names it; the others take the new value.
func TestKeepFixed(t *testing.T) {
	load := func() *config.Config {
		t.Helper()
		c, err := config.Load(filepath.Join("testdata", "reload.toml"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name string
		edit func(*config.Config)
		want []string
		kept func(old, got *config.Config) bool
	}{
		{"nothing", func(*config.Config) {}, nil, nil},
		{"relay policy reloads", func(c *config.Config) { c.Relay.Domains = []string{"new.test"} }, nil,
			func(_, got *config.Config) bool { return slices.Equal(got.Relay.Domains, []string{"new.test"}) }},
		{"certificate files reload", func(c *config.Config) { c.TLS.Cert = "/new/cert.pem" }, nil,
			func(_, got *config.Config) bool { return got.TLS.Cert == "/new/cert.pem" }},
		{"listen", func(c *config.Config) { c.Listen = []string{"127.0.0.1:1"} }, []string{"listen"},
			func(old, got *config.Config) bool { return slices.Equal(got.Listen, old.Listen) }},
		{"data_dir and hostname", func(c *config.Config) { c.DataDir, c.Hostname = "/elsewhere", "other.test" }, []string{"data_dir", "hostname"},
			func(old, got *config.Config) bool { return got.DataDir == old.DataDir && got.Hostname == old.Hostname }},
		{"TLS off", func(c *config.Config) { c.TLS = config.TLS{} }, []string{"tls (on or off)"},
			func(old, got *config.Config) bool {
				return got.TLS.Cert == old.TLS.Cert && len(got.TLS.Certificates) == 1
			}},
		{"state store", func(c *config.Config) { c.State.URL = "redis://127.0.0.1:6379/0" }, []string{"state"},
			func(old, got *config.Config) bool { return got.State == old.State }},
		{"console", func(c *config.Config) {
			c.Admin.Users, c.Admin.SessionTimeout = "/other/admins", config.Duration(time.Minute)
		},
			[]string{"admin.users", "admin.session_timeout"},
			func(old, got *config.Config) bool { return got.Admin == old.Admin }},
		{"queue workers", func(c *config.Config) { c.Queue.MaxParallel++ }, []string{"queue.max_parallel"},
			func(old, got *config.Config) bool { return got.Queue.MaxParallel == old.Queue.MaxParallel }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, got := load(), load()
			tt.edit(got)
			if changed := keepFixed(old, got); !slices.Equal(changed, tt.want) {
				t.Errorf("changed %q, want %q", changed, tt.want)
			}
			if tt.kept != nil && !tt.kept(old, got) {
				t.Error("the config after keepFixed is not the one expected")
			}
		})
	}
}

// TestStatusFile: what the daemon writes `mxgate reload` reads back.
func TestStatusFile(t *testing.T) {
	cfg := &config.Config{DataDir: t.TempDir()}
	d := &daemon{cur: &generation{cfg: cfg}, attempts: 3}
	d.status(false, "configuration reload from f refused, generation 2 still serving: f:1: bad")
	st, err := readStatus(statusPath(cfg))
	if err != nil {
		t.Fatal(err)
	}
	want := reloadStatus{pid: st.pid, attempt: 3, ok: false, msg: "configuration reload from f refused, generation 2 still serving: f:1: bad"}
	if st != want || st.pid <= 0 {
		t.Errorf("read %+v, want %+v with our PID", st, want)
	}
}
