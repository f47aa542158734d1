package peertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// postgresStart bounds a cluster's initdb and its start.
const postgresStart = 60 * time.Second

// Postgres starts a PostgreSQL server of its own for the test: a fresh
// cluster (initdb, trust authentication, fsync off) in a temporary
// directory, postgres run by PID as the system user "postgres" (it refuses
// root) on a free loopback port, stopped when the test ends. It returns
// the URL of the database "mxgate", created in it.
func Postgres(tb testing.TB) string {
	tb.Helper()
	bin := postgresBin(tb)
	u, err := user.Lookup("postgres")
	if err != nil {
		tb.Fatalf("no user postgres (Debian package postgresql): run scripts/install-test-deps.sh: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cred := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}

	// Not tb.TempDir: its parents are root's alone.
	dir, err := os.MkdirTemp("", "mxgate-postgres-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		tb.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithTimeout(context.Background(), postgresStart)
	defer cancel()
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
	initdb.SysProcAttr = cred
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}

	port := FreePort(tb, false)
	srv := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	srv.SysProcAttr = cred
	srv.Dir = dir
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		tb.Fatalf("start postgres: %v", err)
	}
	exited := make(chan struct{})
	go func() { srv.Wait(); close(exited) }()
	tb.Cleanup(func() {
		// SIGINT is postgres' fast shutdown.
		srv.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			srv.Process.Kill()
			<-exited
		}
	})

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for {
		createdb := exec.CommandContext(ctx, filepath.Join(bin, "createdb"), "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "mxgate")
		out, err := createdb.CombinedOutput()
		if err == nil {
			break
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			tb.Fatalf("postgres exited:\n%s", log)
		case <-ctx.Done():
			tb.Fatalf("postgres on %s not ready in %s: %v\n%s", addr, postgresStart, err, out)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return "postgres://postgres@" + addr + "/mxgate?sslmode=disable"
}

// postgresBin is the directory of initdb and postgres: Debian keeps them
// under /usr/lib/postgresql/VERSION/bin, out of PATH.
func postgresBin(tb testing.TB) string {
	tb.Helper()
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres"); len(m) > 0 {
		return filepath.Dir(m[len(m)-1])
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		return filepath.Dir(p)
	}
	tb.Fatal("postgres not found (Debian package postgresql): run scripts/install-test-deps.sh")
	return ""
}
