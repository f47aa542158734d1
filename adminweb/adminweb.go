// Package adminweb is the admin listener: one HTTP server, plain on
// loopback or TLS elsewhere (config decides which), that answers
// Prometheus' /metrics, the /healthz and /readyz probes of an
// orchestrator or a load balancer, the web console at "/" and the
// quarantine digest's end-user links at "/q/". Every reply carries the
// security headers a browser needs to keep the console's pages to
// themselves.
package adminweb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Options configure the listener. The config package has checked them
// (a non-loopback Listen comes with TLS).
type Options struct {
	Listen string      // "HOST:PORT"
	TLS    *tls.Config // nil: plain HTTP

	Metrics http.Handler // /metrics; nil: 404
	// Ready answers /readyz: nil when the gateway can take mail, else an
	// error naming each part that cannot (see Probes). Nil: always ready.
	Ready   func(ctx context.Context) error
	Console http.Handler // "/"; nil: 404
	Links   http.Handler // "/q/", the digest's links; nil: 404

	ReadTimeout, WriteTimeout time.Duration
	// Log writes a line to mainlog (an HTTP server's own errors: a TLS
	// handshake that failed, a client that hung up).
	Log func(string)
}

// readyCache is how long a /readyz answer stands: probes from a load
// balancer every second must not each connect to every scanner.
const readyCache = 2 * time.Second

// Server is the admin listener, bound by New.
type Server struct {
	ln    net.Listener
	srv   *http.Server
	ready func(ctx context.Context) error
	now   func() time.Time

	mu      sync.Mutex
	readyAt time.Time
	readyOK error // the answer taken at readyAt
}

// New binds the listener, so that serve may do it before it drops root.
func New(o Options) (*Server, error) {
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	if o.TLS != nil {
		ln = tls.NewListener(ln, o.TLS)
	}
	s := &Server{ln: ln, ready: o.Ready, now: time.Now}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { text(w, http.StatusOK, "ok\n") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mount(mux, "/metrics", o.Metrics)
	mount(mux, "/q/", o.Links)
	mount(mux, "/", o.Console)
	logf := o.Log
	if logf == nil {
		logf = func(string) {}
	}
	s.srv = &http.Server{
		Handler:           secure(mux),
		ReadHeaderTimeout: o.ReadTimeout,
		ReadTimeout:       o.ReadTimeout,
		WriteTimeout:      o.WriteTimeout,
		IdleTimeout:       o.ReadTimeout,
		ErrorLog:          log.New(logWriter(logf), "", 0),
	}
	return s, nil
}

// mount serves h at pattern, or a 404 when there is none, so that a
// part that is off is not found rather than answered by "/".
func mount(mux *http.ServeMux, pattern string, h http.Handler) {
	if h == nil {
		h = http.NotFoundHandler()
	}
	mux.Handle(pattern, h)
}

// Addr is where the listener is bound (a port 0 resolved).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers requests until Shutdown; then it returns nil.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin listener %v: %w", s.ln.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting, lets requests in flight finish until ctx is
// done, then closes what is left.
// The listener is closed even when Serve was never called.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = errors.Join(err, cerr)
	}
	return err
}

// readyz is 200 "ready" or 503 with the parts that are not, one a line.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	// Not cancelled with the request: the answer is kept for others, and
	// a prober that hung up must not make it "context canceled".
	if err := s.readiness(context.WithoutCancel(r.Context())); err != nil {
		text(w, http.StatusServiceUnavailable, "not ready:\n"+err.Error()+"\n")
		return
	}
	text(w, http.StatusOK, "ready\n")
}

// readiness is the Ready answer, asked again once readyCache has passed.
// Requests that come while it is asked wait for that answer.
func (s *Server) readiness(ctx context.Context) error {
	if s.ready == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := s.now(); s.readyAt.IsZero() || now.Sub(s.readyAt) >= readyCache {
		s.readyOK = s.ready(ctx)
		s.readyAt = s.now()
	}
	return s.readyOK
}

func text(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// secure adds the security headers to every reply: no MIME sniffing, no
// framing (clickjacking of the console's buttons), no Referer carrying a
// digest link's token elsewhere, and nothing loaded from anywhere but
// the listener itself.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		if r.TLS != nil {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.ServeHTTP(w, r)
	})
}

// logWriter turns the HTTP server's error log into mainlog lines.
type logWriter func(string)

func (f logWriter) Write(p []byte) (int, error) {
	f("admin listener: " + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
