package miltersrv

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"mxgate/config"
	"mxgate/filters"
	"mxgate/mainlog"
)

// TestUnixSocketDir: a unix socket in a directory that does not exist
// yet (/run/mxgate/ after a reboot) is bound, the directory made, and the
// MTA can connect to it.
func TestUnixSocketDir(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "mxgate", "milter.sock")
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.MilterServer.Listen = "unix:" + sock
	cfg.MilterServer.Timeout = config.Duration(5 * time.Second)
	srv, err := New(Options{Config: cfg, Pipeline: filters.New(filters.Options{Log: mainlog.Discard()}), Log: mainlog.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Errorf("connecting to %s: %v", sock, err)
	} else {
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Error(err)
	}
	if err := <-done; err != nil {
		t.Error(err)
	}
}
