package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"mxgate/checks"
	"mxgate/config"
	"mxgate/deliver"
	"mxgate/dnsclient"
	"mxgate/event"
	"mxgate/hostlookup"
	"mxgate/mainlog"
	"mxgate/privdrop"
	"mxgate/queue"
	"mxgate/route"
	"mxgate/spool"
	"mxgate/tracking"
)

// openSpool opens the logs and the spool of cfg for the commands that
// work on a live spool beside a running daemon (the queue commands,
// quarantine, sendmail without a daemon). They never create data_dir:
// without it there is no gateway here to administer. Root switches to
// cfg's user first, so that the daemon never finds a file of root's in
// its spool; any other user must be one who may write the spool. The
// caller closes both. The bus (newBus) is what they emit on.
func openSpool(cfg *config.Config) (*mainlog.Logger, *spool.Spool, *event.Bus, error) {
	if err := enterSpool(cfg); err != nil {
		return nil, nil, nil, err
	}
	log, sp, bus, _, err := openLogsAndSpool(cfg, false)
	return log, sp, bus, err
}

// enterSpool is openSpool's check of data_dir and of who is asking.
func enterSpool(cfg *config.Config) error {
	if err := spoolExists(cfg); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if cfg.UID <= 0 {
			return nil
		}
		// The mainlog names the admin who acted (U=root), not the user
		// the command then runs as: user.Current keeps its first answer.
		user.Current()
		if err := privdrop.To(cfg.UID, cfg.GID, cfg.Groups); err != nil {
			return fmt.Errorf("switching to user %s: %w", cfg.User, err)
		}
		return nil
	}
	return maySpool(cfg)
}

// spoolExists refuses a data_dir that does not exist, naming it and how
// it was found.
func spoolExists(cfg *config.Config) error {
	_, err := os.Stat(cfg.DataDir)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, os.ErrNotExist):
		return err
	case cfg.File == "":
		wd, _ := os.Getwd()
		return fmt.Errorf("there is no spool here: the embedded default's data_dir %q does not exist in the working directory %s; give the gateway's config with -config FILE (or $MXGATE_CONFIG)",
			cfg.DataDir, wd)
	default:
		return fmt.Errorf("there is no spool at %s (data_dir of %s): the directory does not exist; `mxgate serve` creates it", cfg.DataDir, cfg.File)
	}
}

// maySpool checks that this (non-root) user may write the spool, so that
// the refusal names the spool's owner rather than one of its files.
func maySpool(cfg *config.Config) error {
	dir := filepath.Join(cfg.DataDir, "spool")
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		dir = cfg.DataDir
	}
	if unix.Access(dir, unix.R_OK|unix.W_OK|unix.X_OK) == nil {
		return nil
	}
	owner := "uid ?"
	if fi, err := os.Stat(dir); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			owner = "uid " + strconv.Itoa(int(st.Uid))
			if u, err := user.LookupId(strconv.Itoa(int(st.Uid))); err == nil {
				owner = u.Username
			}
		}
	}
	return &spoolDenied{user: userName(), dir: dir, owner: owner}
}

// spoolDenied: this user may not use the spool at dir.
type spoolDenied struct{ user, dir, owner string }

func (e *spoolDenied) Error() string {
	return fmt.Sprintf("user %s may not read the spool at %s (owned by %s): run it as root or %s", e.user, e.dir, e.owner, e.owner)
}

// openLogsAndSpool opens (and creates) the logs and the spool of cfg,
// and builds the process's event bus, which the spool emits on, with
// the daemon's own sinks (the metrics) beside newBus's; daemon: serve
// asks (see newBus), and gets its tracking store. The caller closes the
// bus before the spool.
func openLogsAndSpool(cfg *config.Config, daemon bool, sinks ...event.Sink) (*mainlog.Logger, *spool.Spool, *event.Bus, *tracking.Store, error) {
	log, err := mainlog.Open(cfg.Log.Dir, cfg.Log.Format == "json")
	if err != nil {
		return nil, nil, nil, nil, err
	}
	bus, store, err := newBus(cfg, log, daemon, sinks...)
	if err != nil {
		log.Close()
		return nil, nil, nil, nil, err
	}
	sp, err := spool.Open(filepath.Join(cfg.DataDir, "spool"), spool.Options{
		Sync:          spool.SyncPolicy(cfg.Spool.Sync),
		MinFreeSpace:  int64(cfg.Spool.MinFreeSpace),
		MinFreeInodes: int64(cfg.Spool.MinFreeInodes),
		Log:           log,
		Bus:           bus,
	})
	if err != nil {
		log.Panic(fmt.Sprintf("cannot open spool: %v", err))
		bus.Close()
		log.Close()
		return nil, nil, nil, nil, err
	}
	return log, sp, bus, store, nil
}

// newHostLookup is the client host name lookup of cfg's [host_lookup],
// nil when it is off. serve and -bh both name clients through it.
func newHostLookup(cfg *config.Config, bus *event.Bus) (*hostlookup.Resolver, error) {
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
		Bus:       bus,
	})
}

// newRunner builds the queue runner that delivers by r, cfg's router
// (newRouter). serve runs it as the daemon's queue runner; -M, -qf and
// submission run it once in their own process, and the spool's locks keep
// the two from ever handling one message at the same time.
func newRunner(cfg *config.Config, sp *spool.Spool, log *mainlog.Logger, r *route.Router, bus *event.Bus) *queue.Runner {
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
		Bus:                bus,
	})
}

// newRouter is the router of cfg with every transport built: the one the
// queue delivers by and -bt shows. RouteOptions built the Maildir stores'
// transports (the RCPT check asks them too); this adds the network ones.
// log (nil for -bt) gets what the MX transport reports beside its
// results: MTA-STS findings.
func newRouter(cfg *config.Config, log *mainlog.Logger, bus *event.Bus) (*route.Router, error) {
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
			Bus:            bus,
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
