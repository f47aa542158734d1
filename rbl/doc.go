// Package rbl owns DNS blocklist lookups: DNSBL, DNSWL and RHSBL zones
// queried in parallel on miekg/dns, return-code matching, weighted scores,
// and a shared TTL-respecting cache.
package rbl

import _ "github.com/miekg/dns"
