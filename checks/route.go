package checks

import (
	"time"

	"mxgate/config"
	"mxgate/deliver"
	"mxgate/route"
)

// RouteOptions are the routing rules of cfg: the relay domains, every
// store and the outbound mode, without the transports. The RCPT check
// needs only the rules; cmd/mxgate adds the transports for the queue and
// -bt, so all three route by the same options.
func RouteOptions(cfg *config.Config) route.Options {
	o := route.Options{
		RelayDomains: cfg.Relay.Domains,
		Default:      store(route.DefaultRouter, cfg.Downstream),
		Outbound: route.OutboundRoute{
			Mode:      cfg.Outbound.Mode,
			Smarthost: deliver.Target(cfg.Outbound.SmarthostTarget),
		},
		DNSTimeout: time.Duration(cfg.Outbound.ConnectTimeout),
		MXPort:     cfg.Outbound.Port,
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
	return route.StoreRoute{
		Name:      name,
		Target:    deliver.Target(d.Target),
		OverQuota: d.OverQuota,
		Verify:    d.VerifyRecipients,
	}
}
