package adminweb

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mxgate/internal/tlstest"
)

// start serves o on a free loopback port until the test ends and returns
// its base URL.
func start(t *testing.T, o Options) string {
	t.Helper()
	o.Listen = "127.0.0.1:0"
	o.ReadTimeout, o.WriteTimeout = 5*time.Second, 5*time.Second
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	scheme := "http"
	if o.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + s.Addr().String()
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the test's own certificate
}}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func handler(body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body+" "+r.URL.Path) })
}

// Each path goes to its part; a part that is off is 404, never "/".
func TestRoutes(t *testing.T) {
	full := start(t, Options{Metrics: handler("metrics"), Console: handler("console"), Links: handler("links")})
	bare := start(t, Options{})
	for _, tc := range []struct {
		base, path string
		code       int
		body       string
	}{
		{full, "/healthz", 200, "ok\n"},
		{full, "/readyz", 200, "ready\n"},
		{full, "/metrics", 200, "metrics /metrics"},
		{full, "/", 200, "console /"},
		{full, "/queue", 200, "console /queue"},
		{full, "/q/release?t=x", 200, "links /q/release"},
		{bare, "/healthz", 200, "ok\n"},
		{bare, "/readyz", 200, "ready\n"},
		{bare, "/metrics", 404, "404 page not found\n"},
		{bare, "/", 404, "404 page not found\n"},
		{bare, "/q/release", 404, "404 page not found\n"},
	} {
		code, _, body := get(t, tc.base+tc.path)
		if code != tc.code || body != tc.body {
			t.Errorf("GET %s%s = %d %q, want %d %q", tc.base, tc.path, code, body, tc.code, tc.body)
		}
	}
}

// Every reply, a 404 and a 503 too, carries the security headers.
func TestSecurityHeaders(t *testing.T) {
	base := start(t, Options{Metrics: handler("m"), Ready: func(context.Context) error { return errors.New("spool: read-only") }})
	want := map[string]string{
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
		"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/", "/q/x"} {
		_, h, _ := get(t, base+path)
		for k, v := range want {
			if got := h.Get(k); got != v {
				t.Errorf("GET %s: %s = %q, want %q", path, k, got, v)
			}
		}
	}
}

// Over TLS the same answers come, with HSTS.
func TestTLS(t *testing.T) {
	cert := tlstest.Certificate(t, "127.0.0.1")
	base := start(t, Options{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	code, h, body := get(t, base+"/healthz")
	if code != 200 || body != "ok\n" || h.Get("Strict-Transport-Security") == "" {
		t.Errorf("GET /healthz over TLS = %d %q, HSTS %q", code, body, h.Get("Strict-Transport-Security"))
	}
	// A plain-HTTP client is not served.
	resp, err := http.Get(strings.Replace(base, "https:", "http:", 1) + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP on the TLS listener answered 200")
		}
	}
}

// /readyz is 503 naming each part that cannot work: a spool on a
// read-only filesystem, a required spamd that is down.
func TestReadyz(t *testing.T) {
	writable := t.TempDir()
	readOnly := readOnlyDir(t)
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := down.Addr().String()
	down.Close()
	dial := func(ctx context.Context, addr string) error {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}
	for _, tc := range []struct {
		name     string
		spool    string
		spamd    []string
		code     int
		contains []string
	}{
		{"all well", writable, []string{up.Addr().String()}, 200, []string{"ready\n"}},
		{"one of two spamd up", writable, []string{downAddr, up.Addr().String()}, 200, []string{"ready\n"}},
		{"read-only spool", readOnly, []string{up.Addr().String()}, 503, []string{"not ready:\n", "spool: ", "read-only file system"}},
		{"spamd down", writable, []string{downAddr}, 503, []string{"not ready:\n", "spamd: dial tcp " + downAddr, "connection refused"}},
		{"both", readOnly, []string{downAddr}, 503, []string{"spool: ", "\nspamd: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := start(t, Options{Ready: Probes(
				Probe{"spool", Writable(tc.spool)},
				Probe{"spamd", AnyOf(tc.spamd, dial)},
			)})
			code, _, body := get(t, base+"/readyz")
			if code != tc.code {
				t.Errorf("GET /readyz = %d %q, want %d", code, body, tc.code)
			}
			for _, c := range tc.contains {
				if !strings.Contains(body, c) {
					t.Errorf("GET /readyz = %q, lacks %q", body, c)
				}
			}
			// The probe file is gone again.
			if left, _ := filepath.Glob(filepath.Join(tc.spool, ".readyz-*")); len(left) > 0 {
				t.Errorf("probe files left: %v", left)
			}
		})
	}
}

// A burst of probes asks Ready once; after readyCache it is asked again.
func TestReadyCached(t *testing.T) {
	var calls atomic.Int32
	s, err := New(Options{Listen: "127.0.0.1:0", Ready: func(context.Context) error { calls.Add(1); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	now := time.Now()
	s.now = func() time.Time { return now }
	for range 5 {
		if err := s.readiness(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(readyCache)
	_ = s.readiness(context.Background())
	if n := calls.Load(); n != 2 {
		t.Errorf("Ready called %d times, want 2", n)
	}
}

// readOnlyDir is a directory on a read-only filesystem (a read-only bind
// mount), where even root cannot create a file.
func readOnlyDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("a read-only bind mount needs root (the tests run as root)")
	}
	dir := t.TempDir()
	for _, args := range [][]string{{"--bind", dir, dir}, {"-o", "remount,bind,ro", dir}} {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v: %s", args, err, out)
		}
		if args[0] == "--bind" {
			t.Cleanup(func() {
				if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
					t.Errorf("umount %s: %v: %s", dir, err, out)
				}
			})
		}
	}
	return dir
}
