package checks

import (
	"os"
	"strconv"
	"time"

	"mxgate/config"
	"mxgate/deliver"
	"mxgate/route"
)

// RouteOptions are the routing rules of cfg: the relay domains, every
// store and the outbound mode, with the Maildir stores' transports and no
// network transport. The RCPT check needs the rules and a Maildir store's
// answer to where a recipient's Maildir is (no network, cheap: a users
// file at most), so a router of these alone serves -bh; cmd/mxgate adds
// the network transports for the daemon (whose checks and queue share the
// one router) and -bt, so all route by the same options.
func RouteOptions(cfg *config.Config) route.Options {
	o := route.Options{
		RelayDomains: cfg.Relay.Domains,
		Default:      store(route.DefaultRouter, cfg.Downstream),
		Outbound: route.OutboundRoute{
			Mode:      cfg.Outbound.Mode,
			Smarthost: deliver.Target(cfg.Outbound.SmarthostTarget),
		},
		DNSTimeout: time.Duration(cfg.Outbound.ConnectTimeout),
	}
	for _, r := range cfg.Routes {
		s := store(r.Name, r)
		s.Domains = r.Domains
		o.Routes = append(o.Routes, s)
	}
	// A store's host name is looked up (by -bt) with the outbound
	// resolvers, or those of the first check that has any.
	for _, list := range [][]string{cfg.Outbound.Resolver, cfg.RBL.Resolver, cfg.Callout.Resolver, cfg.MsgAuth.Resolver} {
		if len(list) > 0 {
			o.Resolvers = list
			break
		}
	}
	return o
}

func store(name string, d config.Downstream) route.StoreRoute {
	s := route.StoreRoute{
		Name:      name,
		Target:    deliver.Target(d.Target),
		OverQuota: d.OverQuota,
		Verify:    d.VerifyRecipients,
	}
	if d.Target.Scheme == "maildir" {
		// config checked the mode: octal, 0700 to 0777.
		mode, _ := strconv.ParseUint(d.MaildirMode, 8, 32)
		s.Transport = deliver.NewMaildir(deliver.MaildirOptions{
			Root:      d.Target.Path,
			Layout:    d.MaildirLayout,
			Users:     d.MaildirUsers,
			Delimiter: d.RecipientDelimiter,
			Lowercase: d.LowercaseLocal,
			UID:       d.MaildirUID,
			OwnerUser: d.MaildirOwnerUser,
			GID:       d.MaildirGID,
			Mode:      os.FileMode(mode),
		})
	}
	return s
}
