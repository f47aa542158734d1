package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/deliver"
	"mxgate/dnsclient"
	"mxgate/hostlookup"
	"mxgate/mainlog"
	"mxgate/queue"
	"mxgate/route"
	"mxgate/spool"
)

// openSpool opens the logs and the spool of cfg, for serve and for the
// commands that work on a live spool beside a running daemon. The caller
// closes both.
func openSpool(cfg *config.Config) (*mainlog.Logger, *spool.Spool, error) {
	log, err := mainlog.Open(cfg.Log.Dir, cfg.Log.Format == "json")
	if err != nil {
		return nil, nil, err
	}
	sp, err := spool.Open(filepath.Join(cfg.DataDir, "spool"), spool.Options{Sync: spool.SyncPolicy(cfg.Spool.Sync)})
	if err != nil {
		log.Panic(fmt.Sprintf("cannot open spool: %v", err))
		log.Close()
		return nil, nil, err
	}
	return log, sp, nil
}

// newHostLookup is the client host name lookup of cfg's [host_lookup],
// nil when it is off. serve and -bh both name clients through it.
func newHostLookup(cfg *config.Config) (*hostlookup.Resolver, error) {
	h := cfg.HostLookup
	if !h.Enabled {
		return nil, nil
	}
	return hostlookup.New(hostlookup.Options{
		Resolvers: h.Resolver,
		Timeout:   time.Duration(h.Timeout),
		CacheSize: h.CacheSize,
		MinTTL:    time.Duration(h.MinTTL),
		MaxTTL:    time.Duration(h.MaxTTL),
		HostsFile: dnsclient.DefaultHostsFile,
	})
}

// newRunner builds the queue runner that delivers by r, cfg's router
// (newRouter). serve runs it as the daemon's queue runner; -M, -qf and
// submission run it once in their own process, and the spool's locks keep
// the two from ever handling one message at the same time.
func newRunner(cfg *config.Config, sp *spool.Spool, log *mainlog.Logger, r *route.Router) *queue.Runner {
	return queue.New(queue.Options{
		Spool:              sp,
		Router:             r,
		Log:                log,
		Schedule:           cfg.Queue.Schedule,
		RunInterval:        time.Duration(cfg.Queue.RunInterval),
		ReadyMax:           cfg.Queue.ReadyMax,
		MaxParallel:        cfg.Queue.MaxParallel,
		Hostname:           cfg.Hostname,
		DelayWarning:       time.Duration(cfg.Queue.DelayWarning),
		TimeoutFrozenAfter: time.Duration(cfg.Queue.TimeoutFrozenAfter),
	})
}

// newRouter is the router of cfg with every transport built: the one the
// queue delivers by and -bt shows. RouteOptions built the Maildir stores'
// transports (the RCPT check asks them too); this adds the network ones.
// log (nil for -bt) gets what the MX transport reports beside its
// results: MTA-STS findings.
func newRouter(cfg *config.Config, log *mainlog.Logger) (*route.Router, error) {
	o := checks.RouteOptions(cfg)
	var err error
	if o.Default.Transport == nil {
		if o.Default.Transport, err = storeTransport(cfg, cfg.Downstream); err != nil {
			return nil, fmt.Errorf("downstream: %w", err)
		}
	}
	for i, r := range cfg.Routes {
		if o.Routes[i].Transport != nil {
			continue
		}
		if o.Routes[i].Transport, err = storeTransport(cfg, r); err != nil {
			return nil, fmt.Errorf("route %s: %w", r.Name, err)
		}
	}
	out := cfg.Outbound
	var roots *x509.CertPool
	if out.CAFile != "" {
		if roots, err = loadCAs(out.CAFile); err != nil {
			return nil, fmt.Errorf("outbound.ca_file: %w", err)
		}
	}
	switch out.Mode {
	case "mx":
		// -bt (no log) keeps MTA-STS policies in memory: it creates
		// nothing under data_dir and leaves the daemon's cache as it is.
		stsCache := ""
		if log != nil {
			stsCache = filepath.Join(cfg.DataDir, "db", "mta-sts.json")
		}
		o.Outbound.Transport, err = deliver.NewMX(deliver.MXOptions{
			Hostname:       cfg.Hostname,
			Resolvers:      out.Resolver,
			Port:           out.Port,
			ConnectTimeout: time.Duration(out.ConnectTimeout),
			CommandTimeout: time.Duration(out.CommandTimeout),
			DataTimeout:    time.Duration(out.DataTimeout),
			MaxPerDomain:   out.MaxPerDomain,
			IdleTimeout:    time.Duration(out.IdleTimeout),
			MaxMessages:    out.MaxMessagesPerConnection,
			MTASTS:         out.MTASTS,
			MTASTSPort:     out.MTASTSPort,
			RootCAs:        roots,
			MTASTSCache:    stsCache,
			Log:            log.Main,
		})
		if err != nil {
			return nil, fmt.Errorf("outbound: %w", err)
		}
	case "smarthost":
		// A relay at a provider is a fixed, named host: with TLS required
		// its certificate is verified too, or anyone on the path could
		// take the password.
		o.Outbound.Transport, err = deliver.New(deliver.Target(out.SmarthostTarget), deliver.Options{
			Hostname:       cfg.Hostname,
			ConnectTimeout: time.Duration(out.ConnectTimeout),
			CommandTimeout: time.Duration(out.CommandTimeout),
			DataTimeout:    time.Duration(out.DataTimeout),
			StartTLS:       out.StartTLS,
			TLSVerify:      out.StartTLS == "required" || out.SmarthostTarget.Scheme == "smtps",
			RootCAs:        roots,
			AuthUser:       out.AuthUser,
			AuthPassword:   out.AuthPassword,
			IdleTimeout:    time.Duration(out.IdleTimeout),
			MaxMessages:    out.MaxMessagesPerConnection,
		})
		if err != nil {
			return nil, fmt.Errorf("outbound.smarthost: %w", err)
		}
	}
	return route.New(o), nil
}

// closeRouter ends the sessions r's transports keep open between
// messages, within the shutdown timeout; after the last delivery.
func closeRouter(r *route.Router, cfg *config.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.SMTP.ShutdownTimeout))
	defer cancel()
	r.Close(ctx)
}

// storeTransport is the transport of a network store: SMTP or LMTP.
func storeTransport(cfg *config.Config, d config.Downstream) (deliver.Transport, error) {
	return deliver.New(deliver.Target(d.Target), deliver.Options{
		Hostname:       cfg.Hostname,
		ConnectTimeout: time.Duration(d.ConnectTimeout),
		CommandTimeout: time.Duration(d.CommandTimeout),
		DataTimeout:    time.Duration(d.DataTimeout),
		StartTLS:       d.StartTLS,
		TLSVerify:      d.TLSVerify,
		IdleTimeout:    time.Duration(d.IdleTimeout),
		MaxConnections: d.MaxConnections,
		MaxMessages:    d.MaxMessagesPerConnection,
	})
}

// loadCAs reads a PEM bundle of CA certificates.
func loadCAs(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}
