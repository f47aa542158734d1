package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"

	"mxgate/address"
	"mxgate/config"
	"mxgate/filters"
)

// generation is what the sessions accepted between two reloads are
// decided by: the config, the relay policy, the check pipeline and the
// TLS certificates. A connection takes the current one when it is
// accepted and keeps it to its end, so a reload never changes the rules
// in the middle of a transaction.
type generation struct {
	cfg      *config.Config
	policy   *address.Policy
	pipeline *filters.Pipeline
	tls      *tls.Config // nil: no TLS
	retired  func()      // called once no connection uses it after it was replaced

	// Under Server.mu.
	conns    int  // connections admitted under it and not yet released
	replaced bool // a newer one serves new connections
}

func newGeneration(cfg *config.Config, pl *filters.Pipeline, retired func(), loadTLS bool) (*generation, error) {
	g := &generation{
		cfg:      cfg,
		policy:   address.NewPolicy(cfg.Relay.Domains, cfg.Relay.TrustedNetworks),
		pipeline: pl,
		retired:  retired,
	}
	if loadTLS {
		var err error
		if g.tls, err = LoadTLS(cfg.TLS); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// LoadTLS reads the server certificates of t: the default one first,
// then each [[tls.certificate]]. A client's server name (SNI) picks the
// first whose names (SANs, wildcards) cover it; a client naming none of
// them, or no name at all, gets the default. nil when t has no
// certificate. Exported so that config check can load them the same way.
func LoadTLS(t config.TLS) (*tls.Config, error) {
	if t.Cert == "" && t.Key == "" {
		return nil, nil
	}
	pairs := append([]config.TLSCertificate{{Cert: t.Cert, Key: t.Key}}, t.Certificates...)
	certs := make([]tls.Certificate, 0, len(pairs))
	for _, p := range pairs {
		// LoadX509KeyPair fills Leaf, which the SNI match reads.
		cert, err := tls.LoadX509KeyPair(p.Cert, p.Key)
		if err != nil {
			return nil, fmt.Errorf("gateway: loading TLS certificate %s and key %s: %w", p.Cert, p.Key, err)
		}
		certs = append(certs, cert)
	}
	// crypto/tls picks by SNI among several Certificates: the first one
	// the client hello supports (name and algorithms), else the first.
	return &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS12}, nil
}

// configForClient is the listeners' TLS setup: the certificates of the
// generation the connection was accepted under, so a reload changes
// them for new connections only (and STARTTLS on an older one still
// shows the certificate its session began with).
func (s *Server) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	c, ok := hello.Conn.(*conn)
	if !ok || c.gen.tls == nil {
		return nil, errors.New("gateway: TLS on a connection the gateway did not accept")
	}
	return c.gen.tls, nil
}

// Reload makes cfg, with its check pipeline pl, the rules of every
// connection accepted from now on; connections in progress finish under
// the ones they began with. It loads cfg's TLS certificates first: a file
// that does not load refuses the reload and nothing changes. retired is
// cfg's Options.Retired: called, in its own goroutine, once a later
// Reload has replaced it and no connection uses it any more; it closes
// pl.
//
// What go-smtp holds for the server's lifetime cannot change here: the
// caller keeps, from the config the server was made with, the listen
// addresses, hostname, smtp.max_message_size, smtp.max_recipients,
// smtp.max_line_length, smtp.command_timeout and whether TLS is on at all.
func (s *Server) Reload(cfg *config.Config, pl *filters.Pipeline, retired func()) error {
	if s.trace != nil {
		return errors.New("gateway: a test session does not reload")
	}
	g, err := newGeneration(cfg, pl, retired, true)
	if err != nil {
		return err
	}
	s.mu.Lock()
	old := s.gen
	if (g.tls == nil) != (old.tls == nil) {
		s.mu.Unlock()
		return errors.New("gateway: TLS cannot be turned on or off without a restart")
	}
	s.gen = g
	old.replaced = true
	idle := old.conns == 0
	s.mu.Unlock()
	if idle {
		old.retire()
	}
	return nil
}

// retire calls the retired hook of a generation no connection uses.
func (g *generation) retire() {
	if g.retired != nil {
		go g.retired()
	}
}
