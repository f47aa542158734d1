package probe

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"mxgate/auth"
	"mxgate/config"
	"mxgate/dnsclient"
	"mxgate/filters/clamd"
	"mxgate/filters/milter"
	"mxgate/filters/spamd"
	"mxgate/rcptverify"
	"mxgate/state"
)

// Plan lists the probes of every peer cfg names, in the order of the
// config file's sections. What is required:
//
//   - spamd, clamd and each milter whose on_error refuses mail
//     ("tempfail", "reject"): down, they refuse every message;
//   - the downstream, each route's store and the smarthost (outbound
//     mode "smarthost"): down, mail piles up in the queue;
//   - a Dovecot userdb socket unless recipient_verify.defer_ok: down,
//     every recipient gets 451;
//   - the auth backend (Dovecot's auth-client socket, a passwd-file):
//     down, no user can log in;
//   - a resolver that outbound mode "mx" or a DNS list with on_error
//     "tempfail" asks.
//
// The state store ([state] url, Redis) is never required here: the
// caches fail open while it is down.
//
// A DNS list's test entry (127.0.0.2 for an IP list, "test" for a domain
// list, as RFC 5782 has them) only informs: a list that does not know it
// still works for what it does list.
func Plan(cfg *config.Config) []Probe {
	var ps []Probe
	add := func(p Probe) { ps = append(ps, p) }

	for _, a := range cfg.Spamd.Address {
		add(Probe{Peer: "spamd " + strings.TrimPrefix(a, "unix:"), Required: cfg.Spamd.OnError == "tempfail", Timeout: time.Duration(cfg.Spamd.Timeout),
			Run: func(ctx context.Context) (string, error) { return spamd.Ping(ctx, a) }})
	}
	for _, a := range cfg.Clamd.Address {
		add(Probe{Peer: "clamd " + strings.TrimPrefix(a, "unix:"), Required: cfg.Clamd.OnError == "tempfail", Timeout: time.Duration(cfg.Clamd.Timeout),
			Run: func(ctx context.Context) (string, error) { return clamd.Ping(ctx, a) }})
	}
	for _, m := range cfg.Milters {
		o := milter.Options{Address: m.Address, Name: m.Name, OnError: m.OnError,
			ConnectTimeout: time.Duration(m.ConnectTimeout), CommandTimeout: time.Duration(m.CommandTimeout), EOMTimeout: time.Duration(m.EOMTimeout)}
		peer := "milter " + m.Name
		if m.Name != m.Address {
			peer += " " + m.Address
		}
		add(Probe{Peer: peer, Required: m.OnError != "accept", Timeout: time.Duration(m.ConnectTimeout),
			Run: func(ctx context.Context) (string, error) {
				opts, err := milter.Negotiate(ctx, o)
				if err != nil {
					return "", err
				}
				return "negotiated " + opts, nil
			}})
	}

	ps = append(ps, resolvers(cfg)...)
	ps = append(ps, lists(cfg)...)

	ps = append(ps, stores(cfg)...)
	if o := cfg.Outbound; o.Mode == "smarthost" {
		t := o.SmarthostTarget
		add(Probe{Peer: "smarthost " + o.Smarthost, Required: true, Timeout: time.Duration(o.ConnectTimeout),
			Run: func(ctx context.Context) (string, error) {
				// Verified as delivery verifies it (cmd/mxgate wire.go).
				verify := o.StartTLS == "required" || t.Scheme == "smtps"
				return greet(ctx, greeting{target: t, hostname: cfg.Hostname, startTLS: o.StartTLS, verify: verify, roots: o.CAFile})
			}})
	}
	if u := cfg.State.URL; u != "" {
		// Not required for what this package knows to use it: the caches
		// fail open (a miss) while it is down.
		o := cfg.StateOptions()
		add(Probe{Peer: "state " + state.Server(u), Timeout: o.Timeout,
			Run: func(ctx context.Context) (string, error) { return state.Ping(ctx, o) }})
	}
	return ps
}

// resolvers probes each resolver once, whichever sections ask it: "."
// NS is a question every recursive resolver answers from its priming.
func resolvers(cfg *config.Config) []Probe {
	type use struct {
		required bool
		timeout  time.Duration
	}
	uses := map[string]*use{}
	var order []string
	note := func(addrs []string, required bool, timeout config.Duration) {
		for _, a := range addrs {
			u, ok := uses[a]
			if !ok {
				u = &use{timeout: time.Duration(timeout)}
				uses[a] = u
				order = append(order, a)
			}
			u.required = u.required || required
		}
	}
	if len(cfg.RBL.Lists) > 0 {
		tempfail := slices.ContainsFunc(cfg.RBL.Lists, func(l config.RBLList) bool { return l.OnError == "tempfail" })
		note(cfg.RBL.Resolver, tempfail, cfg.RBL.Timeout)
	}
	if cfg.Callout.Enabled {
		note(cfg.Callout.Resolver, false, cfg.Callout.Timeout)
	}
	if cfg.MsgAuth.Enabled {
		note(cfg.MsgAuth.Resolver, false, cfg.MsgAuth.Timeout)
	}
	if cfg.Outbound.Mode == "mx" {
		note(cfg.Outbound.Resolver, true, cfg.Outbound.ConnectTimeout)
	}
	if cfg.HostLookup.Enabled {
		// Without an answer a client is only named by its address.
		note(cfg.HostLookup.Resolver, false, cfg.HostLookup.Timeout)
	}
	var ps []Probe
	for _, a := range order {
		u := uses[a]
		ps = append(ps, Probe{Peer: "resolver " + a, Required: u.required, Timeout: u.timeout,
			Run: func(ctx context.Context) (string, error) {
				c, err := dnsclient.New([]string{a}, u.timeout)
				if err != nil {
					return "", err
				}
				r, err := c.Exchange(ctx, ".", dns.TypeNS, dnsclient.Answerable(".", dns.TypeNS))
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("answered ./NS: %s, %d records", dnsclient.RcodeString(r.Rcode), len(r.Answer)), nil
			}})
	}
	return ps
}

// lists asks each DNS list for its test entry, through rbl.resolver.
func lists(cfg *config.Config) []Probe {
	var ps []Probe
	for _, l := range cfg.RBL.Lists {
		name := "test." + l.Zone + "."
		if l.Kind == "ip" {
			name = "2.0.0.127." + l.Zone + "."
		}
		ps = append(ps, Probe{Peer: "dnsbl " + l.Zone, Timeout: time.Duration(cfg.RBL.Timeout),
			Run: func(ctx context.Context) (string, error) {
				c, err := dnsclient.New(cfg.RBL.Resolver, time.Duration(cfg.RBL.Timeout))
				if err != nil {
					return "", err
				}
				r, err := c.Exchange(ctx, name, dns.TypeA, dnsclient.Answerable(name, dns.TypeA))
				if err != nil {
					return "", err
				}
				var answers []string
				for _, rr := range r.Answer {
					if a, ok := rr.(*dns.A); ok {
						answers = append(answers, a.A.String())
					}
				}
				if len(answers) == 0 {
					return fmt.Sprintf("%s not listed (%s): the list lacks its test entry", strings.TrimSuffix(name, "."), dnsclient.RcodeString(r.Rcode)), nil
				}
				return fmt.Sprintf("%s listed: %s", strings.TrimSuffix(name, "."), strings.Join(answers, ", ")), nil
			}})
	}
	return ps
}

// stores probes the downstream and each route: its server greets and
// answers EHLO or LHLO (and STARTTLS, unless starttls = "none"), or its
// Maildir is a directory; then its userdb socket, if it has one.
func stores(cfg *config.Config) []Probe {
	var ps []Probe
	all := append([]config.Downstream{cfg.Downstream}, cfg.Routes...)
	for i, s := range all {
		section := "downstream"
		if i > 0 {
			section = "route " + s.Name
		}
		t := s.Target
		timeout := time.Duration(s.ConnectTimeout)
		if t.Scheme == "maildir" {
			ps = append(ps, Probe{Peer: section + " " + s.URL, Required: true, Timeout: timeout,
				Run: func(context.Context) (string, error) { return maildir(t.Path) }})
		} else {
			ps = append(ps, Probe{Peer: section + " " + s.URL, Required: true, Timeout: timeout,
				Run: func(ctx context.Context) (string, error) {
					return greet(ctx, greeting{target: t, hostname: cfg.Hostname, startTLS: s.StartTLS, verify: s.TLSVerify})
				}})
		}
		if s.Verify.Source == "dovecot" {
			path := s.Verify.Path
			ps = append(ps, Probe{Peer: section + " userdb " + path, Required: !cfg.RecipientVerify.DeferOK,
				Timeout: time.Duration(cfg.RecipientVerify.Timeout),
				Run: func(ctx context.Context) (string, error) {
					if err := rcptverify.PingDovecot(ctx, path); err != nil {
						return "", err
					}
					return "VERSION 1 handshake", nil
				}})
		}
	}
	if a := cfg.Auth; a.Enabled() {
		ps = append(ps, Probe{Peer: "auth " + a.Backend, Required: true, Timeout: time.Duration(a.Timeout),
			Run: func(ctx context.Context) (string, error) {
				if a.BackendKind == "dovecot" {
					if err := auth.Ping(ctx, a.BackendPath); err != nil {
						return "", err
					}
					return "VERSION 1 handshake, PLAIN offered", nil
				}
				data, err := os.ReadFile(a.BackendPath)
				if err != nil {
					return "", err
				}
				users, err := auth.ParsePasswd(a.BackendPath, data)
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%d users", len(users)), nil
			}})
	}
	return ps
}

// maildir checks that a Maildir base is a directory the gateway may
// write in, without writing in it.
func maildir(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", path)
	}
	if err := syscall.Access(path, 2 /* W_OK */); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return "directory, writable", nil
}
